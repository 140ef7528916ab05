"""latte.data"""

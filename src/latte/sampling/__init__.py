"""latte.sampling"""

"""latte.metrics"""

"""latte.training"""

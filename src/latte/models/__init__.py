"""latte.models"""

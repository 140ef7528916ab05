"""latte.interop"""

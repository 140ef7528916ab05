"""latte.diffusion"""

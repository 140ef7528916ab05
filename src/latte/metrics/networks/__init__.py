"""Feature networks for the metrics: I3D (FVD), InceptionV3 (FID), C3D (UCF101 IS).

All of them are pure PyTorch (no torchvision/timm) and load real weights from local files only.
"""

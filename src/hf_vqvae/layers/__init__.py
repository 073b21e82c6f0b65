"""Building blocks shared by the models: the gated PixelCNN layer and its cached sampling helpers."""

from .gated_pixelcnn import GatedPixelCNNLayer


__all__ = ["GatedPixelCNNLayer"]

from .configuration_pixelcnn_prior import PRIOR_PRESETS, PixelCNNPriorConfig
from .modeling_pixelcnn_prior import PixelCNNPriorModel, PixelCNNPriorOutput


__all__ = ["PRIOR_PRESETS", "PixelCNNPriorConfig", "PixelCNNPriorModel", "PixelCNNPriorOutput"]

from .configuration_video_prior import VideoPriorConfig
from .modeling_video_prior import VideoPriorModel, VideoPriorOutput


__all__ = ["VideoPriorConfig", "VideoPriorModel", "VideoPriorOutput"]

"""diffusers pipelines, one file per pipeline."""

from .pipeline_video_prediction import VideoPredictionPipeline, VideoPredictionPipelineOutput, prediction_strip, save_gif
from .pipeline_vqvae import VQVAEPipeline, VQVAEPipelineOutput


__all__ = [
    "VQVAEPipeline",
    "VQVAEPipelineOutput",
    "VideoPredictionPipeline",
    "VideoPredictionPipelineOutput",
    "prediction_strip",
    "save_gif",
]

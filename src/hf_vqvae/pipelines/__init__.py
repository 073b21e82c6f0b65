"""diffusers pipelines, one file per pipeline."""

from .pipeline_audio_vqvae import AudioVQVAEPipeline
from .pipeline_hierarchical_vqvae import HierarchicalVQVAEPipeline, HierarchicalVQVAEPipelineOutput
from .pipeline_video_prediction import VideoPredictionPipeline, VideoPredictionPipelineOutput, prediction_strip, save_gif
from .pipeline_vqvae import VQVAEPipeline, VQVAEPipelineOutput


__all__ = [
    "AudioVQVAEPipeline",
    "HierarchicalVQVAEPipeline",
    "HierarchicalVQVAEPipelineOutput",
    "VQVAEPipeline",
    "VQVAEPipelineOutput",
    "VideoPredictionPipeline",
    "VideoPredictionPipelineOutput",
    "prediction_strip",
    "save_gif",
]

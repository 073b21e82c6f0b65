"""diffusers pipelines, one file per pipeline."""

from .pipeline_audio_vqvae import AudioVQVAEPipeline
from .pipeline_vqvae import VQVAEPipeline, VQVAEPipelineOutput


__all__ = ["AudioVQVAEPipeline", "VQVAEPipeline", "VQVAEPipelineOutput"]

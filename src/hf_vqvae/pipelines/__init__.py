"""diffusers pipelines, one file per pipeline."""

from .pipeline_vqvae import VQVAEPipeline, VQVAEPipelineOutput


__all__ = ["VQVAEPipeline", "VQVAEPipelineOutput"]

"""diffusers pipelines, one file per pipeline."""

from .pipeline_hierarchical_vqvae import HierarchicalVQVAEPipeline, HierarchicalVQVAEPipelineOutput
from .pipeline_vqvae import VQVAEPipeline, VQVAEPipelineOutput


__all__ = ["HierarchicalVQVAEPipeline", "HierarchicalVQVAEPipelineOutput", "VQVAEPipeline", "VQVAEPipelineOutput"]

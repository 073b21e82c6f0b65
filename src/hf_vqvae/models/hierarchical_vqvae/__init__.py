from .configuration_hierarchical_vqvae import HierarchicalVQVAEConfig
from .modeling_hierarchical_vqvae import HierarchicalVQVAEEncoderOutput, HierarchicalVQVAEModel, HierarchicalVQVAEOutput


__all__ = ["HierarchicalVQVAEConfig", "HierarchicalVQVAEEncoderOutput", "HierarchicalVQVAEModel", "HierarchicalVQVAEOutput"]

from .configuration_vqvae import PRESETS, VQVAEConfig
from .image_processing_vqvae import VQVAEImageProcessor
from .modeling_vqvae import VQVAEDecoderOutput, VQVAEEncoderOutput, VQVAEModel, VQVAEOutput


__all__ = ["PRESETS", "VQVAEConfig", "VQVAEDecoderOutput", "VQVAEEncoderOutput", "VQVAEImageProcessor", "VQVAEModel", "VQVAEOutput"]

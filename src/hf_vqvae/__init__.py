"""hf-vqvae: VQ-VAE (van den Oord et al. 2017) for the Hugging Face ecosystem."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_vqvae import PRESETS, VQVAEConfig
from .image_processing_vqvae import VQVAEImageProcessor
from .modeling_vqvae import VQVAEDecoderOutput, VQVAEEncoderOutput, VQVAEModel, VQVAEOutput
from .quantizer import QuantizerOutput, VectorQuantizer


AutoConfig.register(VQVAEConfig.model_type, VQVAEConfig, exist_ok=True)
AutoModel.register(VQVAEConfig, VQVAEModel, exist_ok=True)
AutoImageProcessor.register(VQVAEConfig, VQVAEImageProcessor, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "QuantizerOutput",
    "VQVAEConfig",
    "VQVAEDecoderOutput",
    "VQVAEEncoderOutput",
    "VQVAEImageProcessor",
    "VQVAEModel",
    "VQVAEOutput",
    "VectorQuantizer",
]

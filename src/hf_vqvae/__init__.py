"""hf-vqvae: VQ-VAE (van den Oord et al. 2017) for the Hugging Face ecosystem."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_pixelcnn_prior import PixelCNNPriorConfig
from .configuration_vqvae import PRESETS, VQVAEConfig
from .image_processing_vqvae import VQVAEImageProcessor
from .modeling_pixelcnn_prior import PixelCNNPriorModel, PixelCNNPriorOutput
from .modeling_utils import CheckpointMismatchError
from .modeling_vqvae import VQVAEDecoderOutput, VQVAEEncoderOutput, VQVAEModel, VQVAEOutput
from .pipeline_vqvae import VQVAEPipeline, VQVAEPipelineOutput
from .quantizer import QuantizerOutput, VectorQuantizer


AutoConfig.register(VQVAEConfig.model_type, VQVAEConfig, exist_ok=True)
AutoModel.register(VQVAEConfig, VQVAEModel, exist_ok=True)
AutoImageProcessor.register(VQVAEConfig, VQVAEImageProcessor, exist_ok=True)
AutoConfig.register(PixelCNNPriorConfig.model_type, PixelCNNPriorConfig, exist_ok=True)
AutoModel.register(PixelCNNPriorConfig, PixelCNNPriorModel, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "CheckpointMismatchError",
    "PixelCNNPriorConfig",
    "PixelCNNPriorModel",
    "PixelCNNPriorOutput",
    "QuantizerOutput",
    "VQVAEConfig",
    "VQVAEDecoderOutput",
    "VQVAEEncoderOutput",
    "VQVAEImageProcessor",
    "VQVAEModel",
    "VQVAEOutput",
    "VQVAEPipeline",
    "VQVAEPipelineOutput",
    "VectorQuantizer",
]

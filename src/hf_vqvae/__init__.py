"""hf-vqvae: VQ-VAE (van den Oord et al. 2017) for the Hugging Face ecosystem."""

import sys

from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoModel

from .data.worlds import WORLD_ACTIONS, render_frames, render_trajectories
from .modeling_utils import CheckpointMismatchError
from .models.audio_vqvae import (
    AUDIO_PRESETS,
    AudioVQVAEConfig,
    AudioVQVAEDecoderOutput,
    AudioVQVAEEncoderOutput,
    AudioVQVAEFeatureExtractor,
    AudioVQVAEModel,
    AudioVQVAEOutput,
)
from .models.hierarchical_vqvae import (
    HierarchicalVQVAEConfig,
    HierarchicalVQVAEEncoderOutput,
    HierarchicalVQVAEModel,
    HierarchicalVQVAEOutput,
)
from .models.pixelcnn_prior import PixelCNNPriorConfig, PixelCNNPriorModel, PixelCNNPriorOutput, modeling_pixelcnn_prior
from .models.video_prior import VideoPriorConfig, VideoPriorModel, VideoPriorOutput
from .models.vqvae import (
    PRESETS,
    VQVAEConfig,
    VQVAEDecoderOutput,
    VQVAEEncoderOutput,
    VQVAEImageProcessor,
    VQVAEModel,
    VQVAEOutput,
    image_processing_vqvae,
    modeling_vqvae,
)
from .pipelines import (
    AudioVQVAEPipeline,
    HierarchicalVQVAEPipeline,
    HierarchicalVQVAEPipelineOutput,
    VideoPredictionPipeline,
    VideoPredictionPipelineOutput,
    VQVAEPipeline,
    VQVAEPipelineOutput,
    prediction_strip,
    save_gif,
)
from .configuration_utils import QuantizerConfigMixin
from .quantization import (
    FiniteScalarQuantizer,
    LookupFreeQuantizer,
    Quantizer,
    QuantizerOutput,
    ResidualVectorQuantizer,
    SimVectorQuantizer,
    VectorQuantizer,
    build_quantizer,
)


AutoConfig.register(VQVAEConfig.model_type, VQVAEConfig, exist_ok=True)
AutoModel.register(VQVAEConfig, VQVAEModel, exist_ok=True)
AutoImageProcessor.register(VQVAEConfig, VQVAEImageProcessor, exist_ok=True)
AutoConfig.register(PixelCNNPriorConfig.model_type, PixelCNNPriorConfig, exist_ok=True)
AutoModel.register(PixelCNNPriorConfig, PixelCNNPriorModel, exist_ok=True)
AutoConfig.register(AudioVQVAEConfig.model_type, AudioVQVAEConfig, exist_ok=True)
AutoModel.register(AudioVQVAEConfig, AudioVQVAEModel, exist_ok=True)
AutoFeatureExtractor.register(AudioVQVAEConfig, AudioVQVAEFeatureExtractor, exist_ok=True)
AutoConfig.register(HierarchicalVQVAEConfig.model_type, HierarchicalVQVAEConfig, exist_ok=True)
AutoModel.register(HierarchicalVQVAEConfig, HierarchicalVQVAEModel, exist_ok=True)
AutoConfig.register(VideoPriorConfig.model_type, VideoPriorConfig, exist_ok=True)
AutoModel.register(VideoPriorConfig, VideoPriorModel, exist_ok=True)

# Folders saved by hf-vqvae 0.1.0 name their components' modules in model_index.json by the paths
# they had before the package was laid out by modality; diffusers imports those paths to load them.
LEGACY_MODULE_PATHS = {
    "hf_vqvae.modeling_vqvae": modeling_vqvae,
    "hf_vqvae.image_processing_vqvae": image_processing_vqvae,
    "hf_vqvae.modeling_pixelcnn_prior": modeling_pixelcnn_prior,
}
for _path, _module in LEGACY_MODULE_PATHS.items():
    sys.modules.setdefault(_path, _module)

__version__ = "0.2.0"

__all__ = [
    "AUDIO_PRESETS",
    "AudioVQVAEConfig",
    "AudioVQVAEDecoderOutput",
    "AudioVQVAEEncoderOutput",
    "AudioVQVAEFeatureExtractor",
    "AudioVQVAEModel",
    "AudioVQVAEOutput",
    "AudioVQVAEPipeline",
    "PRESETS",
    "CheckpointMismatchError",
    "FiniteScalarQuantizer",
    "HierarchicalVQVAEConfig",
    "HierarchicalVQVAEEncoderOutput",
    "HierarchicalVQVAEModel",
    "HierarchicalVQVAEOutput",
    "HierarchicalVQVAEPipeline",
    "HierarchicalVQVAEPipelineOutput",
    "LookupFreeQuantizer",
    "PixelCNNPriorConfig",
    "PixelCNNPriorModel",
    "PixelCNNPriorOutput",
    "Quantizer",
    "QuantizerConfigMixin",
    "QuantizerOutput",
    "ResidualVectorQuantizer",
    "SimVectorQuantizer",
    "VQVAEConfig",
    "VQVAEDecoderOutput",
    "VQVAEEncoderOutput",
    "VQVAEImageProcessor",
    "VQVAEModel",
    "VQVAEOutput",
    "VQVAEPipeline",
    "VQVAEPipelineOutput",
    "VectorQuantizer",
    "WORLD_ACTIONS",
    "build_quantizer",
    "render_frames",
    "render_trajectories",
    "VideoPredictionPipeline",
    "VideoPredictionPipelineOutput",
    "VideoPriorConfig",
    "VideoPriorModel",
    "VideoPriorOutput",
    "prediction_strip",
    "save_gif",
]

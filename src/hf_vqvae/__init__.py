"""hf-vqvae: VQ-VAE (van den Oord et al. 2017) for the Hugging Face ecosystem.

The public names load lazily, as transformers' do. `import hf_vqvae` registers the models with transformers' Auto
classes, so it imports torch, transformers and the models; a pipeline (diffusers) or the rendered 3-D worlds
(datasets) are imported the first time one of their names is used. `_PUBLIC_NAMES` says where each name lives.
"""

import importlib
import sys

from .models.auto import register_with_auto_classes
from .models.pixelcnn_prior import modeling_pixelcnn_prior
from .models.vqvae import image_processing_vqvae, modeling_vqvae
from .version import __version__  # noqa: F401  the package's version, hf_vqvae.__version__


register_with_auto_classes()

# Folders saved by hf-vqvae 0.1.0 name their components' modules in model_index.json by the paths
# they had before the package was laid out by modality; diffusers imports those paths to load them.
LEGACY_MODULE_PATHS = {
    "hf_vqvae.modeling_vqvae": modeling_vqvae,
    "hf_vqvae.image_processing_vqvae": image_processing_vqvae,
    "hf_vqvae.modeling_pixelcnn_prior": modeling_pixelcnn_prior,
}
for _path, _module in LEGACY_MODULE_PATHS.items():
    sys.modules.setdefault(_path, _module)

# The module (relative to the package) that defines each public name.
_PUBLIC_NAMES = {
    "models.vqvae": (
        "PRESETS", "VQVAEConfig", "VQVAEDecoderOutput", "VQVAEEncoderOutput", "VQVAEImageProcessor", "VQVAEModel",
        "VQVAEOutput",
    ),
    "models.pixelcnn_prior": ("PixelCNNPriorConfig", "PixelCNNPriorModel", "PixelCNNPriorOutput"),
    "models.transformer_prior": ("TransformerPriorConfig", "TransformerPriorModel", "TransformerPriorOutput"),
    "models.audio_vqvae": (
        "AUDIO_PRESETS", "AudioVQVAEConfig", "AudioVQVAEDecoderOutput", "AudioVQVAEEncoderOutput",
        "AudioVQVAEFeatureExtractor", "AudioVQVAEModel", "AudioVQVAEOutput",
    ),
    "models.hierarchical_vqvae": (
        "HierarchicalVQVAEConfig", "HierarchicalVQVAEEncoderOutput", "HierarchicalVQVAEModel", "HierarchicalVQVAEOutput",
    ),
    "models.video_prior": ("VideoPriorConfig", "VideoPriorModel", "VideoPriorOutput"),
    "modeling_utils": ("CheckpointMismatchError",),
    "configuration_utils": ("QuantizerConfigMixin",),
    "quantization": (
        "FiniteScalarQuantizer", "LookupFreeQuantizer", "Quantizer", "QuantizerOutput", "ResidualVectorQuantizer",
        "SimVectorQuantizer", "VectorQuantizer", "build_quantizer",
    ),
    "pipelines": (
        "AudioVQVAEPipeline", "HierarchicalVQVAEPipeline", "HierarchicalVQVAEPipelineOutput", "VQVAEPipeline",
        "VQVAEPipelineOutput", "VideoPredictionPipeline", "VideoPredictionPipelineOutput", "prediction_strip", "save_gif",
    ),
    "data.worlds": ("WORLD_ACTIONS", "render_frames", "render_trajectories"),
}
_MODULE_OF = {name: module for module, names in _PUBLIC_NAMES.items() for name in names}

__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    """A public name, imported from its module the first time it is used."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

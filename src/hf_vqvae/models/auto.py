"""The package's models in transformers' Auto classes, and loading a trained VQ-VAE of either kind with its processor.

`import hf_vqvae` calls `register_with_auto_classes`: from then on `AutoConfig`, `AutoModel`, `AutoImageProcessor` and
`AutoFeatureExtractor` load the folders the package saves. A new model adds its config, model and processor here.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoModel

from .audio_vqvae.configuration_audio_vqvae import AudioVQVAEConfig
from .audio_vqvae.feature_extraction_audio_vqvae import AudioVQVAEFeatureExtractor
from .audio_vqvae.modeling_audio_vqvae import AudioVQVAEModel
from .hierarchical_vqvae.configuration_hierarchical_vqvae import HierarchicalVQVAEConfig
from .hierarchical_vqvae.modeling_hierarchical_vqvae import HierarchicalVQVAEModel
from .pixelcnn_prior.configuration_pixelcnn_prior import PixelCNNPriorConfig
from .pixelcnn_prior.modeling_pixelcnn_prior import PixelCNNPriorModel
from .transformer_prior.configuration_transformer_prior import TransformerPriorConfig
from .transformer_prior.modeling_transformer_prior import TransformerPriorModel
from .video_prior.configuration_video_prior import VideoPriorConfig
from .video_prior.modeling_video_prior import VideoPriorModel
from .vqvae.configuration_vqvae import VQVAEConfig
from .vqvae.image_processing_vqvae import VQVAEImageProcessor
from .vqvae.modeling_vqvae import VQVAEModel


# Each model's config class and model class, and each processor with the Auto class that finds it by config.
MODELS = (
    (VQVAEConfig, VQVAEModel),
    (PixelCNNPriorConfig, PixelCNNPriorModel),
    (TransformerPriorConfig, TransformerPriorModel),
    (AudioVQVAEConfig, AudioVQVAEModel),
    (HierarchicalVQVAEConfig, HierarchicalVQVAEModel),
    (VideoPriorConfig, VideoPriorModel),
)
PROCESSORS = (
    (AutoImageProcessor, VQVAEConfig, VQVAEImageProcessor),
    (AutoFeatureExtractor, AudioVQVAEConfig, AudioVQVAEFeatureExtractor),
)


def register_with_auto_classes() -> None:
    """Register every model and processor above with transformers' Auto classes."""
    for config_class, model_class in MODELS:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
    for auto_class, config_class, processor_class in PROCESSORS:
        auto_class.register(config_class, processor_class, exist_ok=True)


def load_vqvae(name_or_path: str, cache_dir: str | None = None) -> tuple[VQVAEModel, VQVAEImageProcessor]:
    """A trained VQ-VAE in eval mode and its image processor: the one saved with it, else one made
    for its resolution and channels."""
    vqvae = VQVAEModel.from_pretrained(name_or_path, cache_dir=cache_dir).eval()
    try:
        processor = VQVAEImageProcessor.from_pretrained(name_or_path, cache_dir=cache_dir)
    except OSError:
        processor = VQVAEImageProcessor.for_vqvae(vqvae.config)
    return vqvae, processor


def is_audio_vqvae(name_or_path: str, cache_dir: str | None = None) -> bool:
    """Whether the VQ-VAE `name_or_path` (a folder or a Hub id) is an `AudioVQVAEModel`, from its config."""
    config, _ = AudioVQVAEConfig.get_config_dict(name_or_path, cache_dir=cache_dir)
    return config.get("model_type") == AudioVQVAEConfig.model_type


def load_audio_vqvae(name_or_path: str, cache_dir: str | None = None) -> tuple[AudioVQVAEModel, AudioVQVAEFeatureExtractor]:
    """A trained audio VQ-VAE in eval mode and its feature extractor: the one saved with it, else one made for it."""
    vqvae = AudioVQVAEModel.from_pretrained(name_or_path, cache_dir=cache_dir).eval()
    try:
        feature_extractor = AudioVQVAEFeatureExtractor.from_pretrained(name_or_path, cache_dir=cache_dir)
    except OSError:
        feature_extractor = AudioVQVAEFeatureExtractor.for_model(vqvae.config)
    return vqvae, feature_extractor

from .configuration_audio_vqvae import AUDIO_PRESETS, AudioVQVAEConfig
from .feature_extraction_audio_vqvae import AudioVQVAEFeatureExtractor
from .modeling_audio_vqvae import (
    AudioVQVAEDecoderOutput,
    AudioVQVAEEncoderOutput,
    AudioVQVAEModel,
    AudioVQVAEOutput,
)
from .mu_law import mu_law_decode, mu_law_encode


__all__ = [
    "AUDIO_PRESETS",
    "AudioVQVAEConfig",
    "AudioVQVAEDecoderOutput",
    "AudioVQVAEEncoderOutput",
    "AudioVQVAEFeatureExtractor",
    "AudioVQVAEModel",
    "AudioVQVAEOutput",
    "mu_law_decode",
    "mu_law_encode",
]

"""Configuration of the audio VQ-VAE (van den Oord et al. 2017, section 4.3): a strided 1-D encoder, the vector
quantizer and a speaker-conditioned WaveNet decoder over mu-law samples."""

import math

from transformers import PreTrainedConfig

from ...configuration_utils import QuantizerConfigMixin, check_integer_field, check_quantizer_fields
from ...layers.wavenet import receptive_field
from .loudness import check_loudness_settings


# Section 4.3: six strided convolutions (stride 2, window 4) = one latent per 64 samples of 16 kHz speech, K = 512;
# VCTK has 109 speakers.
AUDIO_PRESETS = {
    "vctk": dict(
        sampling_rate=16000, downsampling_strides=[2, 2, 2, 2, 2, 2], num_embeddings=512, embedding_dim=64,
        num_speakers=109, residual_channels=128, gate_channels=128, skip_channels=256, num_layers=30,
        dilation_cycle=10,
    ),
}


class AudioVQVAEConfig(PreTrainedConfig, QuantizerConfigMixin):
    r"""
    Configuration of an [`AudioVQVAEModel`].

    Args:
        sampling_rate (`int`, defaults to 16000): the waveform's rate in Hz.
        hidden_channels (`int`, defaults to 128): channels of the encoder's strided convolutions.
        downsampling_strides (`list[int]`, defaults to `[2, 2, 2, 2, 2, 2]`): one strided convolution (window twice
            the stride) per entry; one latent covers their product in samples (64, the paper's).
        num_embeddings (`int`, defaults to 512): codebook size K.
        embedding_dim (`int`, defaults to 64): code dimension D.
        quantizer_type, commitment_cost, update_rule, decay, epsilon, kmeans_init, kmeans_iters,
            dead_code_threshold, and the variants' fields: the quantizer's settings, as in [`QuantizerConfigMixin`]
            (`quantizer_type="residual_vq"` makes a neural codec whose bitrate is chosen by the stages decoded),
            except `decay` (defaults to 0.9, the paper's 0.99 for images): early in training the encoder's outputs
            move faster than a 100-update average follows, every latent lands on one or two codes, and a code is
            only found dead ~70 updates later; at 0.9 the codebook follows within ~10 updates and dead codes
            restart after ~7 (docs/audio.md).
        mu_law_channels (`int`, defaults to 256): levels of the mu-law categorical the decoder predicts.
        residual_channels (`int`, defaults to 64): channels of the WaveNet's residual stream.
        gate_channels (`int`, defaults to 64): channels after each gate.
        skip_channels (`int`, defaults to 128): channels of the skip connections and output layers.
        num_layers (`int`, defaults to 20): residual blocks of the WaveNet.
        dilation_cycle (`int`, defaults to 10): dilations 1, 2, ..., 2**(cycle - 1), repeated.
        kernel_size (`int`, defaults to 2): width of each dilated causal convolution.
        conditioning_channels (`int`, defaults to 64): channels of the latents fed to every gate.
        num_speakers (`int`, defaults to 0): speakers the decoder is conditioned on (0: none, single-speaker data).
        speaker_embedding_dim (`int`, defaults to 32): size of the learned speaker embedding.
        speaker_names (`list[str]`, *optional*): one name per speaker id, so speakers can be named.
        normalize_loudness (`bool`, defaults to `True`): the model takes clips scaled to the gated level
            `loudness_target_db` (each training clip is, and [`AudioVQVAEFeatureExtractor.for_model`] scales the
            clips it is given); its decoder speaks at that level. A config saved before this field existed loads
            with `False`: such a model took clips at their own level.
        loudness_target_db (`float`, defaults to -20.0): that level, in dBFS (`loudness.gated_level_db`).

    Presets: `AudioVQVAEConfig.from_preset("vctk", **overrides)`.
    """

    model_type = "hf_vqvae_audio"

    sampling_rate: int = 16000
    hidden_channels: int = 128
    downsampling_strides: list[int] | tuple[int, ...] = (2, 2, 2, 2, 2, 2)
    decay: float = 0.9  # not QuantizerConfigMixin's 0.99: see the docstring
    mu_law_channels: int = 256
    residual_channels: int = 64
    gate_channels: int = 64
    skip_channels: int = 128
    num_layers: int = 20
    dilation_cycle: int = 10
    kernel_size: int = 2
    conditioning_channels: int = 64
    num_speakers: int = 0
    speaker_embedding_dim: int = 32
    speaker_names: list[str] | None = None
    normalize_loudness: bool = True
    loudness_target_db: float = -20.0

    def __post_init__(self, **kwargs):
        self.downsampling_strides = list(self.downsampling_strides)
        if self.speaker_names is not None:
            self.speaker_names = [str(name) for name in self.speaker_names]
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        for name in (
            "sampling_rate", "hidden_channels", "residual_channels",
            "gate_channels", "skip_channels", "num_layers", "dilation_cycle", "conditioning_channels",
            "speaker_embedding_dim",
        ):
            check_integer_field(self, name, 1, "an integer >= 1")
        check_integer_field(self, "kernel_size", 2, "an integer >= 2")
        check_integer_field(self, "mu_law_channels", 2, "an integer >= 2")
        check_integer_field(self, "num_speakers", 0, "an integer >= 0 (0: no speaker conditioning)")
        strides = self.downsampling_strides
        if not strides or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in strides):
            raise ValueError(
                f"AudioVQVAEConfig.downsampling_strides must be a non-empty list of integers >= 1, got {strides!r}"
            )
        check_quantizer_fields(self)
        check_loudness_settings("AudioVQVAEConfig", "normalize_loudness", self.normalize_loudness, self.loudness_target_db)
        if self.speaker_names is not None:
            if len(self.speaker_names) != self.num_speakers:
                raise ValueError(
                    f"AudioVQVAEConfig.speaker_names has {len(self.speaker_names)} names but num_speakers is "
                    f"{self.num_speakers}; give one name per speaker"
                )
            if len(set(self.speaker_names)) != len(self.speaker_names):
                raise ValueError(f"AudioVQVAEConfig.speaker_names must be distinct, got {self.speaker_names}")

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # Configs saved before loudness normalisation existed describe models trained on clips at their own level.
        return super().from_dict({"normalize_loudness": False, **config_dict}, **kwargs)

    @property
    def hop_length(self) -> int:
        """Samples per latent: the product of the strides."""
        return math.prod(self.downsampling_strides)

    @property
    def receptive_field(self) -> int:
        """Past samples one decoder output sees."""
        return receptive_field(self.num_layers, self.dilation_cycle, self.kernel_size)

    @property
    def bits_per_second(self) -> float:
        """Information rate of the codes: log2(K) bits per latent and residual stage."""
        return self.sampling_rate / self.hop_length * self.code_layout.bits_per_position

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "AudioVQVAEConfig":
        """A config with the paper's audio settings (see `AUDIO_PRESETS`), fields overridable."""
        if name not in AUDIO_PRESETS:
            raise ValueError(f"unknown audio VQ-VAE preset {name!r}; available presets: {sorted(AUDIO_PRESETS)}")
        return cls(**{**AUDIO_PRESETS[name], **overrides})

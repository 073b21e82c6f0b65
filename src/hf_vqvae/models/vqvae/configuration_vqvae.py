"""Configuration of the VQ-VAE (van den Oord et al. 2017, section 4)."""

from ...configuration_utils import PackageConfig, QuantizerConfigMixin, check_integer_field, check_quantizer_fields


# The paper's settings (section 4). Every preset keeps the quantizer fixes (k-means init, dead-code
# restarts) on: they change how the codebook trains, not the model the paper describes.
PRESETS = {
    # 32x32x3 -> 8x8 codes; 2 strided convs + 2 residual blocks, 256 hidden units.
    "cifar10": dict(
        sample_size=32, hidden_channels=256, residual_channels=256, num_residual_blocks=2,
        num_downsamples=2, num_embeddings=512, embedding_dim=64,
    ),
    # 128x128x3 -> 32x32x1 codes with K = 512.
    "imagenet128": dict(
        sample_size=128, hidden_channels=256, residual_channels=256, num_residual_blocks=2,
        num_downsamples=2, num_embeddings=512, embedding_dim=64,
    ),
    # DeepMind Lab 84x84x3 -> 21x21x1 codes with K = 512.
    "dmlab84": dict(
        sample_size=84, hidden_channels=256, residual_channels=256, num_residual_blocks=2,
        num_downsamples=2, num_embeddings=512, embedding_dim=64,
    ),
}


class VQVAEConfig(PackageConfig, QuantizerConfigMixin):
    r"""
    Configuration of a [`VQVAEModel`]: encoder, vector quantizer and decoder.

    Args:
        in_channels (`int`, defaults to 3): channels of the images (3 for RGB, 1 for grayscale).
        sample_size (`int`, defaults to 32): the image side the model is trained on; the code grid
            is `sample_size // 2**num_downsamples` on a side. The model itself accepts any size
            divisible by the downsampling factor.
        hidden_channels (`int`, defaults to 128): channels of the strided convolutions and the
            residual stack.
        residual_channels (`int`, defaults to 32): channels inside each residual block (3x3 conv).
        num_residual_blocks (`int`, defaults to 2): residual blocks (ReLU, 3x3, ReLU, 1x1) in the
            encoder and in the decoder.
        num_downsamples (`int`, defaults to 2): stride-2 4x4 convolutions; the code grid is
            2**num_downsamples times smaller on each side (2 gives the paper's 128->32, 84->21,
            32->8).
        num_embeddings (`int`, defaults to 512): codebook size K.
        embedding_dim (`int`, defaults to 64): code dimension D.
        quantizer_type, commitment_cost, update_rule, decay, epsilon, kmeans_init, kmeans_iters,
            dead_code_threshold, and the variants' fields: the quantizer's settings, documented in
            [`QuantizerConfigMixin`]. By default the paper's quantizer with an EMA codebook (decay 0.99),
            k-means initialisation and dead-code restarts below half the mean usage.

    Presets for the paper's settings: `VQVAEConfig.from_preset("cifar10" | "imagenet128" |
    "dmlab84", **overrides)`.
    """

    model_type = "hf_vqvae"

    in_channels: int = 3
    sample_size: int = 32
    hidden_channels: int = 128
    residual_channels: int = 32
    num_residual_blocks: int = 2
    num_downsamples: int = 2

    def __post_init__(self, **kwargs):
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        for name in ("in_channels", "sample_size", "hidden_channels", "residual_channels", "num_downsamples"):
            check_integer_field(self, name, 1, "an integer >= 1")
        check_integer_field(self, "num_residual_blocks", 0, "an integer >= 0")
        check_quantizer_fields(self)
        if self.sample_size % self.downsampling_factor:
            raise ValueError(
                f"VQVAEConfig.sample_size ({self.sample_size}) must be divisible by the downsampling factor "
                f"2**num_downsamples = {self.downsampling_factor}"
            )

    @property
    def downsampling_factor(self) -> int:
        """How many pixels one code covers on each side."""
        return 2**self.num_downsamples

    @property
    def latent_size(self) -> int:
        """Side of the code grid for images of `sample_size`."""
        return self.sample_size // self.downsampling_factor

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "VQVAEConfig":
        """A config with one of the paper's settings (see `PRESETS`), fields overridable."""
        if name not in PRESETS:
            raise ValueError(f"unknown VQ-VAE preset {name!r}; available presets: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

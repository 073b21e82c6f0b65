"""Configuration of the VQ-VAE (van den Oord et al. 2017, section 4)."""

from ...configuration_utils import (
    PackageConfig,
    check_bool_field,
    check_choice_field,
    check_float_field,
    check_integer_field,
)
from ...quantization.vector_quantizer import UPDATE_RULES


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


class VQVAEConfig(PackageConfig):
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
        commitment_cost (`float`, defaults to 0.25): beta, the weight of the commitment term.
        update_rule (`str`, defaults to `"ema"`): `"ema"` (appendix A.1) or `"loss"` (eq. 3).
        decay (`float`, defaults to 0.99): gamma of the EMA updates, in (0, 1).
        epsilon (`float`, defaults to 1e-5): Laplace smoothing of the EMA cluster sizes.
        kmeans_init (`bool`, defaults to `True`): k-means initialisation of the codebook on the
            first training batch.
        kmeans_iters (`int`, defaults to 10): Lloyd iterations of that initialisation.
        dead_code_threshold (`float`, defaults to 0.5): codes whose usage average falls below this
            fraction of the mean usage per code (latents per batch / K) are re-seeded from encoder
            outputs with fresh EMA state; 0 disables restarts.

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
    num_embeddings: int = 512
    embedding_dim: int = 64
    commitment_cost: float = 0.25
    update_rule: str = "ema"
    decay: float = 0.99
    epsilon: float = 1e-5
    kmeans_init: bool = True
    kmeans_iters: int = 10
    dead_code_threshold: float = 0.5

    def __post_init__(self, **kwargs):
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        positive_ints = (
            "in_channels", "sample_size", "hidden_channels", "residual_channels", "num_embeddings",
            "embedding_dim", "num_downsamples",
        )
        for name in positive_ints:
            check_integer_field(self, name, 1, "an integer >= 1")
        for name in ("num_residual_blocks", "kmeans_iters"):
            check_integer_field(self, name, 0, "an integer >= 0")
        check_choice_field(self, "update_rule", UPDATE_RULES)
        check_float_field(self, "commitment_cost", minimum=0.0)
        check_float_field(self, "decay", minimum=0.0, maximum=1.0, exclusive_minimum=True, exclusive_maximum=True)
        check_float_field(self, "epsilon", minimum=0.0, exclusive_minimum=True)
        check_bool_field(self, "kmeans_init")
        check_float_field(self, "dead_code_threshold", minimum=0.0)  # 0 disables restarts
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

"""Configuration of the gated PixelCNN prior over VQ-VAE code grids."""

from ...configuration_utils import PackageConfig, check_integer_field


# The code grids of the VQ-VAE paper's settings (section 4), named as the VQ-VAE presets so a prior can be
# paired with its VQ-VAE by name. The ImageNet samples of the paper are class-conditional.
PRIOR_PRESETS = {
    "cifar10": dict(num_embeddings=512, grid_height=8, grid_width=8),
    "imagenet128": dict(num_embeddings=512, grid_height=32, grid_width=32, num_classes=1000),
    "dmlab84": dict(num_embeddings=512, grid_height=21, grid_width=21),
}


class PixelCNNPriorConfig(PackageConfig):
    r"""
    Configuration of [`PixelCNNPriorModel`], a gated PixelCNN (van den Oord et al. 2016) that models the
    distribution of the code grids a VQ-VAE produces. The defaults are the ImageNet setting of the VQ-VAE paper:
    a 32x32 grid of codes from a codebook of 512.

    Args:
        num_embeddings (`int`, *optional*, defaults to 512):
            Number of codes K, i.e. the VQ-VAE's codebook size. The prior predicts K logits per position.
        grid_height (`int`, *optional*, defaults to 32):
            Height of the code grid (the VQ-VAE's latent height).
        grid_width (`int`, *optional*, defaults to 32):
            Width of the code grid (the VQ-VAE's latent width).
        hidden_channels (`int`, *optional*, defaults to 128):
            Channels of the code embedding and of the vertical and horizontal stacks.
        num_layers (`int`, *optional*, defaults to 15):
            Number of gated layers.
        kernel_size (`int`, *optional*, defaults to 5):
            Width of the (odd) convolution window. The vertical stack sees `kernel_size // 2 + 1` rows of it, the
            horizontal stack `kernel_size // 2 + 1` columns.
        skip_channels (`int`, *optional*, defaults to 256):
            Channels of the skip connections summed over the layers and of the output layers that map them to logits.
        num_classes (`int`, *optional*, defaults to 0):
            Number of class labels to condition on; 0 makes the prior unconditional.

    Presets for the code grids of the paper's settings: `PixelCNNPriorConfig.from_preset("cifar10" | "imagenet128" |
    "dmlab84", **overrides)`.
    """

    model_type = "hf_vqvae_pixelcnn_prior"

    num_embeddings: int = 512
    grid_height: int = 32
    grid_width: int = 32
    hidden_channels: int = 128
    num_layers: int = 15
    kernel_size: int = 5
    skip_channels: int = 256
    num_classes: int = 0

    def __post_init__(self, **kwargs):
        check_integer_field(self, "num_embeddings", 2, "an integer >= 2")
        check_integer_field(self, "grid_height", 1, "a positive integer")
        check_integer_field(self, "grid_width", 1, "a positive integer")
        check_integer_field(self, "hidden_channels", 1, "a positive integer")
        check_integer_field(self, "num_layers", 1, "a positive integer")
        check_integer_field(self, "skip_channels", 1, "a positive integer")
        check_integer_field(self, "num_classes", 0, "a non-negative integer (0 = unconditional)")
        check_integer_field(self, "kernel_size", 3, "an odd integer >= 3")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"PixelCNNPriorConfig.kernel_size must be an odd integer >= 3, got {self.kernel_size!r}")
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PixelCNNPriorConfig":
        """A config for the code grid of one of the paper's settings (see `PRIOR_PRESETS`), fields overridable."""
        if name not in PRIOR_PRESETS:
            raise ValueError(f"unknown PixelCNN prior preset {name!r}; available presets: {sorted(PRIOR_PRESETS)}")
        return cls(**{**PRIOR_PRESETS[name], **overrides})


__all__ = ["PRIOR_PRESETS", "PixelCNNPriorConfig"]

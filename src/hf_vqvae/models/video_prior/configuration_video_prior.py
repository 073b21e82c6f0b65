"""Configuration of the action-conditioned video prior over VQ-VAE code grids."""

from transformers import PreTrainedConfig

from ...configuration_utils import check_integer_field


class VideoPriorConfig(PreTrainedConfig):
    r"""
    Configuration of [`VideoPriorModel`], an action-conditioned autoregressive prior over the code grids of
    successive frames (section 4.4 of van den Oord et al. 2017): the grid of frame t + 1 is modelled by a gated
    PixelCNN conditioned, in every gate, on a map built from the grids of the previous `context_frames` frames and
    the action taken after frame t. The defaults are the paper's setting: 84x84 frames encoded to 21x21 grids of
    K=512 codes, 6 frames of context.

    Args:
        num_embeddings (`int`, *optional*, defaults to 512):
            Number of codes K, the VQ-VAE's codebook size.
        grid_height (`int`, *optional*, defaults to 21):
            Height of a frame's code grid (the VQ-VAE's latent height).
        grid_width (`int`, *optional*, defaults to 21):
            Width of a frame's code grid.
        context_frames (`int`, *optional*, defaults to 6):
            Frames the next frame is predicted from; generation needs at least this many frames of context.
        num_actions (`int`, *optional*, defaults to 8):
            Size of the action space: actions are ids in `[0, num_actions)`.
        action_names (`list[str]`, *optional*):
            The name of each action id (`num_actions` of them), e.g. from the trajectories' `ClassLabel`.
        hidden_channels (`int`, *optional*, defaults to 128):
            Channels of the PixelCNN's code embedding and of its vertical and horizontal stacks.
        num_layers (`int`, *optional*, defaults to 15):
            Number of gated layers.
        kernel_size (`int`, *optional*, defaults to 5):
            Width of the PixelCNN's (odd) convolution window.
        skip_channels (`int`, *optional*, defaults to 256):
            Channels of the skip connections and of the output layers.
        context_embedding_dim (`int`, *optional*, defaults to 32):
            Channels of each context code's embedding, and of the action's embedding.
        conditioning_channels (`int`, *optional*, defaults to 128):
            Channels of the conditioning map that every gate reads.
        conditioning_layers (`int`, *optional*, defaults to 3):
            Residual 3x3 convolutions over the context grids and the action before the map reaches the gates: the
            context is fully known, so these see every position, and their receptive field is how far content can
            move between frames in code positions.
    """

    model_type = "hf_vqvae_video_prior"

    num_embeddings: int = 512
    grid_height: int = 21
    grid_width: int = 21
    context_frames: int = 6
    num_actions: int = 8
    action_names: list[str] | None = None
    hidden_channels: int = 128
    num_layers: int = 15
    kernel_size: int = 5
    skip_channels: int = 256
    context_embedding_dim: int = 32
    conditioning_channels: int = 128
    conditioning_layers: int = 3

    def __post_init__(self, **kwargs):
        check_integer_field(self, "num_embeddings", 2, "an integer >= 2")
        check_integer_field(self, "grid_height", 1, "a positive integer")
        check_integer_field(self, "grid_width", 1, "a positive integer")
        check_integer_field(self, "context_frames", 1, "a positive integer")
        check_integer_field(self, "num_actions", 1, "a positive integer")
        check_integer_field(self, "hidden_channels", 1, "a positive integer")
        check_integer_field(self, "num_layers", 1, "a positive integer")
        check_integer_field(self, "skip_channels", 1, "a positive integer")
        check_integer_field(self, "context_embedding_dim", 1, "a positive integer")
        check_integer_field(self, "conditioning_channels", 1, "a positive integer")
        check_integer_field(self, "conditioning_layers", 0, "a non-negative integer")
        check_integer_field(self, "kernel_size", 3, "an odd integer >= 3")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"VideoPriorConfig.kernel_size must be an odd integer >= 3, got {self.kernel_size!r}")
        if self.action_names is not None:
            names = list(self.action_names)
            if len(names) != self.num_actions or not all(isinstance(name, str) for name in names):
                raise ValueError(
                    f"VideoPriorConfig.action_names must be {self.num_actions} strings (num_actions), got {names!r}"
                )
            self.action_names = names
        super().__post_init__(**kwargs)


__all__ = ["VideoPriorConfig"]

"""Configuration of the second stage of the paper's two-stage hierarchy (section 4.2): a VQ-VAE over
the code grids of a first VQ-VAE, whose decoder is a conditional gated PixelCNN."""

from transformers import PreTrainedConfig

from ...configuration_utils import (
    QuantizerConfigMixin, check_choice_field, check_float_field, check_integer_field, check_quantizer_fields,
)


CONDITIONING_KINDS = ("decoded", "upsampled")

# What a config saved before these fields existed meant: it loads with the behaviour it was trained with.
FIELDS_OF_EARLIER_CONFIGS = dict(
    conditioning="upsampled", conditioning_num_layers=1, auxiliary_loss_weight=0.0, auxiliary_loss_warmup_fraction=None
)


class HierarchicalVQVAEConfig(PreTrainedConfig, QuantizerConfigMixin):
    r"""
    Configuration of [`HierarchicalVQVAEModel`]. The defaults are the paper's DeepMind Lab setting: the 21x21
    grids of a stage-1 VQ-VAE with K = 512 (the `dmlab84` preset) compressed to 3x1 codes with K = 512 (27 bits).

    Args:
        input_num_embeddings (`int`, defaults to 512): the stage-1 codebook size, the K of the codes modelled.
        input_grid_height (`int`, defaults to 21): height of the stage-1 code grid.
        input_grid_width (`int`, defaults to 21): width of the stage-1 code grid.
        input_embedding_dim (`int`, defaults to 64): the encoder's embedding of each stage-1 code.
        encoder_hidden_channels (`int`, defaults to 128): channels of the encoder's convolutions.
        encoder_num_downsamples (`int`, defaults to 2): stride-2 4x4 convolutions before the encoder's last
            (linear) layer, which maps the whole downsampled grid to the latent grid so every latent sees the
            whole frame.
        latent_grid_height (`int`, defaults to 3): height of the stage-2 latent grid.
        latent_grid_width (`int`, defaults to 1): width of the stage-2 latent grid.
        num_embeddings (`int`, defaults to 512): the stage-2 codebook size K.
        embedding_dim (`int`, defaults to 64): the stage-2 code dimension D.
        quantizer_type, commitment_cost, update_rule, decay, epsilon, kmeans_init, kmeans_iters,
            dead_code_threshold, and the variants' fields: the stage-2 quantizer, as in [`QuantizerConfigMixin`].
        conditioning (`str`, defaults to `"decoded"`): how the stage-2 latents become the decoder's conditioning
            map over the stage-1 grid, which every gated layer projects into its gates. `"decoded"`: a small
            non-autoregressive decoder, one linear map from all the latents to a grid a third of the stage-1 grid's
            side, nearest upsampling, then `conditioning_num_layers` 3x3 convolutions, so the map can say what lies
            where in the frame. `"upsampled"` (configs saved before this field existed): each latent upsampled over
            its band of rows, then `conditioning_num_layers` 3x3 convolutions.
        conditioning_channels (`int`, defaults to 64): channels of the conditioning map.
        conditioning_num_layers (`int`, defaults to 2): 3x3 convolutions of the conditioning network (ReLU between).
        auxiliary_loss_weight (`float`, defaults to 0.2): weight of an auxiliary loss in training, the negative
            log-likelihood of each stage-1 code predicted from the conditioning map alone (no autoregressive
            context, a 1x1 head). Its gradient reaches the encoder directly, so the latents learn to describe the
            frame even while the autoregressive decoder can do without them; 0 removes the head (configs saved
            before this field existed).
        auxiliary_loss_warmup_fraction (`float`, *optional*, defaults to `None`): the auxiliary loss only as a
            warm-up: its weight falls linearly from `auxiliary_loss_weight` at the first update to 0 after this
            fraction of the training updates (in (0, 1]), so the encoder learns to describe the frame early and the
            decoder then spends its capacity on the bits. `None`: the full weight throughout training (configs saved
            before this field existed). Training scripts apply it (`auxiliary_loss_weight_at`); the model's
            `forward` alone uses `auxiliary_loss_weight`.
        decoder_hidden_channels (`int`, defaults to 128), decoder_num_layers (`int`, defaults to 15),
        decoder_kernel_size (`int`, defaults to 5), decoder_skip_channels (`int`, defaults to 256): the gated
            PixelCNN decoder over the stage-1 codes, as in [`PixelCNNPriorConfig`].
    """

    model_type = "hf_vqvae_hierarchical_vqvae"

    input_num_embeddings: int = 512
    input_grid_height: int = 21
    input_grid_width: int = 21
    input_embedding_dim: int = 64
    encoder_hidden_channels: int = 128
    encoder_num_downsamples: int = 2
    latent_grid_height: int = 3
    latent_grid_width: int = 1
    conditioning: str = "decoded"
    conditioning_channels: int = 64
    conditioning_num_layers: int = 2
    auxiliary_loss_weight: float = 0.2
    auxiliary_loss_warmup_fraction: float | None = None
    decoder_hidden_channels: int = 128
    decoder_num_layers: int = 15
    decoder_kernel_size: int = 5
    decoder_skip_channels: int = 256

    def __post_init__(self, **kwargs):
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        check_integer_field(self, "input_num_embeddings", 2, "an integer >= 2")
        positive_ints = (
            "input_grid_height", "input_grid_width", "input_embedding_dim", "encoder_hidden_channels",
            "latent_grid_height", "latent_grid_width", "conditioning_channels", "conditioning_num_layers", "decoder_hidden_channels",
            "decoder_num_layers", "decoder_skip_channels",
        )
        for name in positive_ints:
            check_integer_field(self, name, 1, "an integer >= 1")
        check_integer_field(self, "encoder_num_downsamples", 0, "an integer >= 0")
        check_integer_field(self, "decoder_kernel_size", 3, "an odd integer >= 3")
        if self.decoder_kernel_size % 2 == 0:
            raise ValueError(
                f"HierarchicalVQVAEConfig.decoder_kernel_size must be an odd integer >= 3, got {self.decoder_kernel_size!r}"
            )
        check_quantizer_fields(self)
        check_choice_field(self, "conditioning", CONDITIONING_KINDS)
        check_float_field(self, "auxiliary_loss_weight", minimum=0.0)
        if self.auxiliary_loss_warmup_fraction is not None:
            check_float_field(self, "auxiliary_loss_warmup_fraction", minimum=0.0, maximum=1.0, exclusive_minimum=True)
        height, width = self.downsampled_grid
        if height < 1 or width < 1:
            raise ValueError(
                f"HierarchicalVQVAEConfig.encoder_num_downsamples={self.encoder_num_downsamples} shrinks the "
                f"{self.input_grid_height}x{self.input_grid_width} input grid to nothing; use fewer downsamples"
            )

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "HierarchicalVQVAEConfig":
        return super().from_dict({**FIELDS_OF_EARLIER_CONFIGS, **config_dict}, **kwargs)

    def auxiliary_loss_weight_at(self, step: int, max_train_steps: int) -> float:
        """The auxiliary loss's weight at update `step` (0 for the first) of `max_train_steps`: `auxiliary_loss_weight`,
        falling linearly to 0 at `auxiliary_loss_warmup_fraction` of the updates when that is set."""
        if self.auxiliary_loss_warmup_fraction is None:
            return self.auxiliary_loss_weight
        warmup_steps = self.auxiliary_loss_warmup_fraction * max_train_steps
        return self.auxiliary_loss_weight * max(0.0, 1.0 - step / warmup_steps)

    @property
    def conditioning_grid(self) -> tuple[int, int]:
        """The grid the `"decoded"` conditioning's linear map writes, a third of the stage-1 grid on a side."""
        return -(-self.input_grid_height // 3), -(-self.input_grid_width // 3)

    @property
    def downsampled_grid(self) -> tuple[int, int]:
        """The encoder's grid after its strided convolutions (4x4, stride 2, padding 1 each)."""
        height, width = self.input_grid_height, self.input_grid_width
        for _ in range(self.encoder_num_downsamples):
            height, width = height // 2, width // 2
        return height, width

    @property
    def input_grid(self) -> tuple[int, int]:
        return self.input_grid_height, self.input_grid_width

    @property
    def latent_grid(self) -> tuple[int, int]:
        return self.latent_grid_height, self.latent_grid_width


__all__ = ["HierarchicalVQVAEConfig"]

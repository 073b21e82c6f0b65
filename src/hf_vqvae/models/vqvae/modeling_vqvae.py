"""The VQ-VAE of van den Oord et al. 2017 (section 4.1) as a transformers model."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel  # noqa: F401  diffusers finds a pipeline component's base class on its module
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .configuration_vqvae import VQVAEConfig
from .model_card_vqvae import vqvae_model_card
from ...input_checks import check_not_empty, check_signal_values
from ...modeling_utils import HubPreTrainedModel
from ...quantization.factory import build_quantizer


@dataclass
class VQVAEOutput(ModelOutput):
    """
    Args:
        loss: reconstruction_loss + codebook_loss + commitment_cost * commitment_loss.
        reconstruction: decoded images, (B, C, H, W), in [-1, 1] up to the decoder's error.
        reconstruction_loss: mean squared error between reconstruction and input.
        codebook_loss: ||sg[z_e] - e||^2; zero under the EMA update rule.
        commitment_loss: ||z_e - sg[e]||^2, before multiplying by beta.
        perplexity: exp(entropy) of the codes used in this batch.
        indices: the code grid, (B, h, w).
        encoder_hidden_states: with `output_hidden_states`, the encoder's activations: after each
            downsampling step, the 3x3 convolution, each residual block and the stack's ReLU, and
            z_e last.
        decoder_hidden_states: with `output_hidden_states`, the decoder's activations: after the
            3x3 convolution, each residual block and the stack's ReLU, and each upsampling step
            (the reconstruction last).
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class VQVAEEncoderOutput(ModelOutput):
    """
    Args:
        latents: z_e, the encoder output before quantization, (B, D, h, w).
        quantized: z_q, the nearest codebook vectors, (B, D, h, w).
        indices: the code grid, (B, h, w).
    """

    latents: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None


@dataclass
class VQVAEDecoderOutput(ModelOutput):
    """
    Args:
        reconstruction: decoded images, (B, C, H, W).
    """

    reconstruction: torch.FloatTensor | None = None


def run_stages(stages: nn.Sequential | list[nn.Module], hidden: torch.Tensor, hidden_states: list | None) -> torch.Tensor:
    """Run `stages` in order, recording in `hidden_states` (when given) the output of each ReLU, each
    residual block and the last stage: one entry per activation a reader would name."""
    for index, stage in enumerate(stages):
        hidden = stage(hidden)
        if hidden_states is not None and (isinstance(stage, (nn.ReLU, ResidualBlock)) or index == len(stages) - 1):
            hidden_states.append(hidden)
    return hidden


class ResidualBlock(GradientCheckpointingLayer):
    """x + conv1x1(relu(conv3x3(relu(x)))), as in section 4.1. Under gradient checkpointing
    (`model.gradient_checkpointing_enable()`) its activations are recomputed in the backward pass."""

    def __init__(self, channels: int, residual_channels: int):
        super().__init__()
        self.conv3x3 = nn.Conv2d(channels, residual_channels, kernel_size=3, padding=1)
        self.conv1x1 = nn.Conv2d(residual_channels, channels, kernel_size=1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.conv1x1(F.relu(self.conv3x3(F.relu(hidden))))


class ResidualStack(nn.Sequential):
    def __init__(self, config: VQVAEConfig):
        blocks = [ResidualBlock(config.hidden_channels, config.residual_channels) for _ in range(config.num_residual_blocks)]
        super().__init__(*blocks, nn.ReLU())


class Encoder(nn.Module):
    """Strided 4x4 convolutions down, a 3x3 convolution, residual blocks, a 1x1 projection to D."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        layers = []
        channels = config.in_channels
        for _ in range(config.num_downsamples):
            layers += [nn.Conv2d(channels, config.hidden_channels, kernel_size=4, stride=2, padding=1), nn.ReLU()]
            channels = config.hidden_channels
        self.downsample = nn.Sequential(*layers)
        self.conv_in = nn.Conv2d(config.hidden_channels, config.hidden_channels, kernel_size=3, padding=1)
        self.residual_stack = ResidualStack(config)
        self.project_to_codes = nn.Conv2d(config.hidden_channels, config.embedding_dim, kernel_size=1)

    def forward(self, pixel_values: torch.Tensor, hidden_states: list | None = None) -> torch.Tensor:
        """z_e; each activation is appended to `hidden_states` when a list is given."""
        hidden = run_stages(self.downsample, pixel_values, hidden_states)
        hidden = run_stages([self.conv_in], hidden, hidden_states)
        hidden = run_stages(self.residual_stack, hidden, hidden_states)
        return run_stages([self.project_to_codes], hidden, hidden_states)


class Decoder(nn.Module):
    """The encoder's mirror image: 3x3 convolution from D, residual blocks, transposed 4x4
    convolutions up to the image channels."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(config.embedding_dim, config.hidden_channels, kernel_size=3, padding=1)
        self.residual_stack = ResidualStack(config)
        layers = []
        for step in range(config.num_downsamples):
            last = step == config.num_downsamples - 1
            out_channels = config.in_channels if last else config.hidden_channels
            layers.append(nn.ConvTranspose2d(config.hidden_channels, out_channels, kernel_size=4, stride=2, padding=1))
            if not last:
                layers.append(nn.ReLU())
        self.upsample = nn.Sequential(*layers)

    def forward(self, quantized: torch.Tensor, hidden_states: list | None = None) -> torch.Tensor:
        """The images; each activation is appended to `hidden_states` when a list is given."""
        hidden = run_stages([self.conv_in], quantized, hidden_states)
        hidden = run_stages(self.residual_stack, hidden, hidden_states)
        return run_stages(self.upsample, hidden, hidden_states)


class VQVAEPreTrainedModel(HubPreTrainedModel):
    config_class = VQVAEConfig
    base_model_prefix = "vqvae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    # Nearest-neighbour search and EMA statistics stay fp32 when loading with dtype=bf16/fp16.
    _keep_in_fp32_modules_strict = ["quantizer"]


class VQVAEModel(VQVAEPreTrainedModel):
    """VQ-VAE: encoder -> vector quantizer -> decoder.

    Pixel values are floats in [-1, 1], shape (B, in_channels, H, W) with H and W divisible by
    `config.downsampling_factor`.

    Example:

    ```python
    >>> import torch
    >>> from hf_vqvae import VQVAEConfig, VQVAEModel
    >>> model = VQVAEModel(VQVAEConfig(hidden_channels=32, residual_channels=8, num_embeddings=16, embedding_dim=4))
    >>> images = torch.rand(2, 3, 32, 32) * 2 - 1
    >>> out = model(images)
    >>> out.reconstruction.shape, out.indices.shape
    (torch.Size([2, 3, 32, 32]), torch.Size([2, 8, 8]))

    ```
    """

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        self.encoder = Encoder(config)
        self.quantizer = build_quantizer(config)
        self.decoder = Decoder(config)
        self.post_init()

    def _checked_pixel_values(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`pixel_values` checked and cast to the encoder's dtype (float64 or float16 images work with an fp32
        model, float32 ones with a bf16 model)."""
        config = self.config
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
        if not pixel_values.is_floating_point():
            raise ValueError(
                f"pixel_values must be floats in [-1, 1], got dtype {pixel_values.dtype}; convert integer images "
                "with VQVAEImageProcessor or `images.float() / 127.5 - 1`"
            )
        if pixel_values.ndim != 4:
            raise ValueError(
                f"pixel_values must have 4 dimensions (batch, channels, height, width), got shape {tuple(pixel_values.shape)}"
            )
        check_not_empty("pixel_values", pixel_values, "images")
        if pixel_values.shape[1] != config.in_channels:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[1]} channels but the model expects in_channels="
                f"{config.in_channels} (shape {tuple(pixel_values.shape)})"
            )
        height, width = pixel_values.shape[-2:]
        factor = config.downsampling_factor
        if height % factor or width % factor:
            raise ValueError(
                f"image height and width must be divisible by the downsampling factor {factor} "
                f"(2**num_downsamples), got {height}x{width}"
            )
        # NaN/Inf pixels would get arbitrary codes and a NaN loss.
        check_signal_values(
            "pixel_values", pixel_values, kind="images", likely_cause="0..255 pixels",
            fix="use VQVAEImageProcessor, or `images / 127.5 - 1` for 0..255 values", training=self.training,
        )
        return pixel_values.to(self.encoder.conv_in.weight.dtype)

    def _check_indices(self, indices: torch.Tensor) -> None:
        axes = self.quantizer.code_layout.code_axes("height", "width")
        if not isinstance(indices, torch.Tensor) or indices.ndim != 1 + len(axes):
            shape = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise ValueError(f"indices must be a tensor of shape (batch, {', '.join(axes)}), got {shape}")
        check_not_empty("indices", indices, "code grids")

    def encode(self, pixel_values: torch.Tensor, return_dict: bool | None = None) -> VQVAEEncoderOutput | tuple:
        """Images -> continuous latents z_e, their quantized z_q and the code grid."""
        pixel_values = self._checked_pixel_values(pixel_values)
        latents = self.encoder(pixel_values)
        quantized = self.quantizer(latents)
        output = VQVAEEncoderOutput(latents=latents, quantized=quantized.quantized, indices=quantized.indices)
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    def decode(self, indices: torch.Tensor, return_dict: bool | None = None) -> VQVAEDecoderOutput | tuple:
        """Code grid (B, h, w) of integers in [0, K) -> images; for residual VQ (B, k, h, w), the first k <= N
        stages."""
        self._check_indices(indices)
        return self.decode_latents(self.quantizer.lookup(indices), return_dict=return_dict)

    def decode_latents(self, quantized: torch.Tensor, return_dict: bool | None = None) -> VQVAEDecoderOutput | tuple:
        """Continuous latents (B, D, h, w), e.g. z_q or an interpolation between codes -> images."""
        if quantized.ndim != 4 or quantized.shape[1] != self.config.embedding_dim:
            raise ValueError(
                f"latents must have shape (batch, {self.config.embedding_dim}, height, width), got {tuple(quantized.shape)}"
            )
        check_not_empty("latents", quantized, "latent grids")
        reconstruction = self.decoder(quantized.to(self.decoder.conv_in.weight.dtype))
        output = VQVAEDecoderOutput(reconstruction=reconstruction)
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> VQVAEOutput | tuple:
        """Encode, quantize, decode; the loss is eq. 3 with an MSE reconstruction term. With
        `output_hidden_states` (default: `config.output_hidden_states`) the output also holds the encoder's and
        the decoder's activations."""
        pixel_values = self._checked_pixel_values(pixel_values)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        encoder_hidden_states = [] if output_hidden_states else None
        decoder_hidden_states = [] if output_hidden_states else None
        latents = self.encoder(pixel_values, encoder_hidden_states)
        quantized = self.quantizer(latents)
        reconstruction = self.decoder(quantized.quantized, decoder_hidden_states)
        reconstruction_loss = F.mse_loss(reconstruction.float(), pixel_values.float())
        output = VQVAEOutput(
            loss=reconstruction_loss + quantized.loss,
            reconstruction=reconstruction,
            reconstruction_loss=reconstruction_loss,
            codebook_loss=quantized.codebook_loss,
            commitment_loss=quantized.commitment_loss,
            perplexity=quantized.perplexity,
            indices=quantized.indices,
            encoder_hidden_states=tuple(encoder_hidden_states) if output_hidden_states else None,
            decoder_hidden_states=tuple(decoder_hidden_states) if output_hidden_states else None,
        )
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    def model_card(self, repo_id: str, **card_fields):
        """The model card `push_to_hub` uploads (`dataset_name`, `metrics`, `image_path`)."""
        return vqvae_model_card(self.config, repo_id, **card_fields)

    def _use_return_dict(self, return_dict: bool | None) -> bool:
        return return_dict if return_dict is not None else self.config.return_dict

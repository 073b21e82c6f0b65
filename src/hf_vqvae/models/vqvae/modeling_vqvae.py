"""The VQ-VAE of van den Oord et al. 2017 (section 4.1) as a transformers model."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel  # noqa: F401  diffusers finds a pipeline component's base class on its module
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_vqvae import VQVAEConfig
from ...hub import vqvae_model_card
from ...modeling_utils import HubPreTrainedModel
from ...quantization.vector_quantizer import VectorQuantizer


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
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None


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


class ResidualBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))), as in section 4.1."""

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

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.conv_in(self.downsample(pixel_values))
        return self.project_to_codes(self.residual_stack(hidden))


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

    def forward(self, quantized: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.residual_stack(self.conv_in(quantized)))


class VQVAEPreTrainedModel(HubPreTrainedModel):
    config_class = VQVAEConfig
    base_model_prefix = "vqvae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    # Nearest-neighbour search and EMA statistics stay fp32 when loading with dtype=bf16/fp16.
    _keep_in_fp32_modules_strict = ["quantizer"]

    def _init_weights(self, module):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            # PyTorch's default convolution init (the base class's N(0, 0.02) starves a deep ReLU stack).
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, VectorQuantizer):
            bound = 1.0 / module.num_embeddings
            init.uniform_(module.embedding, -bound, bound)
            init.ones_(module.cluster_size)
            init.copy_(module.embed_sum, module.embedding)
            init.constant_(module.initialized, not module.kmeans_init)
            init.zeros_(module.restart_step)
            init.zeros_(module.codes_used)


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
        self.quantizer = VectorQuantizer(
            num_embeddings=config.num_embeddings,
            embedding_dim=config.embedding_dim,
            commitment_cost=config.commitment_cost,
            update_rule=config.update_rule,
            decay=config.decay,
            epsilon=config.epsilon,
            kmeans_init=config.kmeans_init,
            kmeans_iters=config.kmeans_iters,
            dead_code_threshold=config.dead_code_threshold,
        )
        self.decoder = Decoder(config)
        self.post_init()

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
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

    def _check_indices(self, indices: torch.Tensor) -> None:
        if not isinstance(indices, torch.Tensor) or indices.ndim != 3:
            shape = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise ValueError(f"indices must be a tensor of shape (batch, height, width), got {shape}")

    def encode(self, pixel_values: torch.Tensor, return_dict: bool | None = None) -> VQVAEEncoderOutput | tuple:
        """Images -> continuous latents z_e, their quantized z_q and the code grid."""
        self._check_pixel_values(pixel_values)
        latents = self.encoder(pixel_values)
        quantized = self.quantizer(latents)
        output = VQVAEEncoderOutput(latents=latents, quantized=quantized.quantized, indices=quantized.indices)
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    def decode(self, indices: torch.Tensor, return_dict: bool | None = None) -> VQVAEDecoderOutput | tuple:
        """Code grid (B, h, w) of integers in [0, K) -> images."""
        self._check_indices(indices)
        return self.decode_latents(self.quantizer.lookup(indices), return_dict=return_dict)

    def decode_latents(self, quantized: torch.Tensor, return_dict: bool | None = None) -> VQVAEDecoderOutput | tuple:
        """Continuous latents (B, D, h, w), e.g. z_q or an interpolation between codes -> images."""
        if quantized.ndim != 4 or quantized.shape[1] != self.config.embedding_dim:
            raise ValueError(
                f"latents must have shape (batch, {self.config.embedding_dim}, height, width), got {tuple(quantized.shape)}"
            )
        reconstruction = self.decoder(quantized.to(self.decoder.conv_in.weight.dtype))
        output = VQVAEDecoderOutput(reconstruction=reconstruction)
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None) -> VQVAEOutput | tuple:
        """Encode, quantize, decode; the loss is eq. 3 with an MSE reconstruction term."""
        self._check_pixel_values(pixel_values)
        latents = self.encoder(pixel_values)
        quantized = self.quantizer(latents)
        reconstruction = self.decoder(quantized.quantized)
        reconstruction_loss = F.mse_loss(reconstruction.float(), pixel_values.float())
        output = VQVAEOutput(
            loss=reconstruction_loss + quantized.loss,
            reconstruction=reconstruction,
            reconstruction_loss=reconstruction_loss,
            codebook_loss=quantized.codebook_loss,
            commitment_loss=quantized.commitment_loss,
            perplexity=quantized.perplexity,
            indices=quantized.indices,
        )
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    def model_card(self, repo_id: str, **card_fields):
        """The model card `push_to_hub` uploads (`dataset_name`, `metrics`, `image_path`)."""
        return vqvae_model_card(self.config, repo_id, **card_fields)

    def _use_return_dict(self, return_dict: bool | None) -> bool:
        return return_dict if return_dict is not None else self.config.return_dict

"""The second stage of the paper's two-stage hierarchy (section 4.2): a VQ-VAE over a first VQ-VAE's code grids.

Its encoder compresses a grid of stage-1 codes (21x21 for 84x84 frames) to a few stage-2 latents (3x1), the
shared `VectorQuantizer` quantizes them, and its decoder is a conditional gated PixelCNN over the stage-1 codes:
the stage-2 latents, decoded (or upsampled) to a map over the stage-1 grid, are a location-dependent conditioning
projected into every gate of the shared `GatedPixelCNN` (its sampler, cached or plain, is reused as it is). The
loss is the negative log-likelihood of the stage-1 codes, the quantizer's loss, and an auxiliary loss: the stage-1
codes predicted from the conditioning map alone. An autoregressive decoder can model the grid without latents,
and then the encoder gets little gradient and the latents describe little; the auxiliary loss gives the encoder a
direct signal, so the latents carry their frame (docs/hierarchy.md has the measurements).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel  # noqa: F401  diffusers finds a pipeline component's base class on its module
from transformers.utils import ModelOutput

from .model_card_hierarchical_vqvae import hierarchical_vqvae_model_card
from ...input_checks import check_code_grids, check_same_batch
from ...layers.gated_pixelcnn import GatedPixelCNN
from ...layers.sampling import check_temperature
from ...modeling_utils import HubPreTrainedModel, fixed_codebook_error
from ...quantization.factory import build_quantizer
from .configuration_hierarchical_vqvae import HierarchicalVQVAEConfig


@dataclass
class HierarchicalVQVAEOutput(ModelOutput):
    """
    Args:
        loss: nll_loss + auxiliary_loss_weight * auxiliary_loss + codebook_loss + commitment_cost * commitment_loss.
        nll_loss: mean negative log-likelihood of the stage-1 codes per code, in nats, given the stage-2 latents.
        auxiliary_loss: mean negative log-likelihood per code, in nats, of the stage-1 codes predicted from the
            conditioning map alone (no autoregressive context); None without an auxiliary head.
        codebook_loss: ||sg[z_e] - e||^2 of the stage-2 quantizer; zero under the EMA update rule.
        commitment_loss: ||z_e - sg[e]||^2 of the stage-2 quantizer, before multiplying by beta.
        perplexity: exp(entropy) of the stage-2 codes used in this batch.
        logits: (B, input_num_embeddings, input_grid_height, input_grid_width), the decoder's logits of each
            stage-1 code given the codes before it in raster order and the stage-2 latents.
        latent_indices: the stage-2 code grid, (B, latent_grid_height, latent_grid_width).
        encoder_hidden_states: with `output_hidden_states`, the encoder's activations: the embedded stage-1 codes,
            after the 3x3 convolution and each downsampling, and z_e last.
        decoder_hidden_states: with `output_hidden_states`, the decoder's: the embedded stage-1 codes and each gated
            layer's horizontal-stack output, (B, decoder_hidden_channels, input_grid_height, input_grid_width).
    """

    loss: torch.FloatTensor | None = None
    nll_loss: torch.FloatTensor | None = None
    auxiliary_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    latent_indices: torch.LongTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class HierarchicalVQVAEEncoderOutput(ModelOutput):
    """
    Args:
        latents: z_e, the encoder output before quantization, (B, D, latent_grid_height, latent_grid_width).
        quantized: z_q, the nearest stage-2 codebook vectors, same shape.
        indices: the stage-2 code grid, (B, latent_grid_height, latent_grid_width).
    """

    latents: torch.FloatTensor | None = None
    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None


class CodeGridEncoder(nn.Module):
    """Stage-1 codes -> stage-2 latents: an embedding of each code, a 3x3 convolution, stride-2 4x4
    convolutions, then one linear map from the whole downsampled grid to every latent position."""

    def __init__(self, config: HierarchicalVQVAEConfig):
        super().__init__()
        self.latent_shape = (config.embedding_dim, *config.latent_grid)
        hidden = config.encoder_hidden_channels
        self.code_embedding = nn.Embedding(config.input_num_embeddings, config.input_embedding_dim)
        self.conv_in = nn.Conv2d(config.input_embedding_dim, hidden, 3, padding=1)
        self.downsamples = nn.ModuleList(nn.Conv2d(hidden, hidden, 4, stride=2, padding=1) for _ in range(config.encoder_num_downsamples))
        self.to_latents = nn.Linear(hidden * math.prod(config.downsampled_grid), math.prod(self.latent_shape))

    def forward(self, codes: torch.Tensor, hidden_states: list | None = None) -> torch.Tensor:
        """z_e; each activation is appended to `hidden_states` when a list is given."""
        hidden = self.code_embedding(codes).permute(0, 3, 1, 2)
        activations = [hidden]
        for stage in (self.conv_in, *self.downsamples):
            hidden = F.relu(stage(hidden))
            activations.append(hidden)
        latents = self.to_latents(hidden.flatten(1)).view(codes.shape[0], *self.latent_shape)
        if hidden_states is not None:
            hidden_states.extend([*activations, latents])
        return latents


class HierarchicalVQVAEModel(HubPreTrainedModel):
    r"""
    The second stage of a two-stage VQ-VAE: encoder from a grid of stage-1 codes to a small latent grid, the
    shared `VectorQuantizer`, and a conditional gated PixelCNN decoder over the stage-1 codes.

    `model(input_ids=codes).loss` trains it; `model.encode(codes).indices` gives the stage-2 codes;
    `model.sample(latent_indices)` draws stage-1 code grids given stage-2 codes (cached by default);
    `model.bits_per_grid(codes)` measures how well the decoder predicts a grid given its stage-2 codes.

    Example:

    ```python
    >>> import torch
    >>> from hf_vqvae import HierarchicalVQVAEConfig, HierarchicalVQVAEModel
    >>> config = HierarchicalVQVAEConfig(input_num_embeddings=16, input_grid_height=6, input_grid_width=6,
    ...     num_embeddings=8, embedding_dim=4, encoder_hidden_channels=8, encoder_num_downsamples=1,
    ...     conditioning_channels=4, decoder_hidden_channels=8, decoder_num_layers=2, decoder_skip_channels=8)
    >>> model = HierarchicalVQVAEModel(config)
    >>> codes = torch.randint(0, 16, (2, 6, 6))
    >>> out = model(codes)
    >>> out.logits.shape, out.latent_indices.shape
    (torch.Size([2, 16, 6, 6]), torch.Size([2, 3, 1]))

    ```
    """

    config_class = HierarchicalVQVAEConfig
    base_model_prefix = "hierarchical_vqvae"
    main_input_name = "input_ids"
    _keep_in_fp32_modules_strict = ["quantizer"]

    def __init__(self, config: HierarchicalVQVAEConfig):
        super().__init__(config)
        self.encoder = CodeGridEncoder(config)
        self.quantizer = build_quantizer(config)
        # The conditioning network (see `conditioning_map`). Its first convolution keeps the name it had when it was the
        # only layer, so folders saved then still load.
        channels = config.conditioning_channels
        self.latents_to_grid = (
            nn.Linear(config.embedding_dim * math.prod(config.latent_grid), channels * math.prod(config.conditioning_grid))
            if config.conditioning == "decoded"
            else None
        )
        self.conditioning_network = nn.Conv2d(channels if self.latents_to_grid else config.embedding_dim, channels, 3, padding=1)
        self.conditioning_layers = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1) for _ in range(config.conditioning_num_layers - 1)
        )
        # Predicts each stage-1 code from the conditioning map alone: the auxiliary loss (training only).
        self.auxiliary_head = (
            nn.Sequential(
                nn.Conv2d(config.conditioning_channels, config.decoder_skip_channels, 1), nn.ReLU(),
                nn.Conv2d(config.decoder_skip_channels, config.input_num_embeddings, 1),
            )
            if config.auxiliary_loss_weight > 0
            else None
        )
        self.decoder = GatedPixelCNN(
            config.input_num_embeddings, config.decoder_hidden_channels, config.decoder_num_layers,
            config.decoder_kernel_size, config.decoder_skip_channels, conditioning_channels=config.conditioning_channels,
        )
        self.post_init()

    def model_card(self, repo_id: str, **card_fields):
        """The model card `push_to_hub` uploads (`dataset_name`, `metrics`, `image_path`)."""
        return hierarchical_vqvae_model_card(self.config, repo_id, **card_fields)

    def get_input_embeddings(self) -> nn.Embedding:
        """The decoder's embedding of the stage-1 codes it predicts, what transformers and PEFT call the input
        embeddings (as the prior's; the encoder embeds the same codes with its own `encoder.code_embedding`)."""
        return self.decoder.code_embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.decoder.code_embedding = value

    def resize_token_embeddings(self, *args, **kwargs):
        """Refused: the input codes are a stage-1 VQ-VAE's codebook, and the decoder has one logit per code."""
        raise fixed_codebook_error("the stage-2 model", "input_num_embeddings", "HierarchicalVQVAEConfig")

    # ----------------------------------------------------------------------------------------------- checks

    def check_compatible_with_vqvae(self, num_embeddings: int, latent_height: int, latent_width: int) -> None:
        """Raise ValueError unless this model's input is the code grid of a stage-1 VQ-VAE with this codebook size
        and grid."""
        config = self.config
        if num_embeddings != config.input_num_embeddings:
            raise ValueError(
                f"the stage-2 model takes codes of a codebook of input_num_embeddings={config.input_num_embeddings}, "
                f"but the stage-1 VQ-VAE's codebook has {num_embeddings} codes; they must be equal"
            )
        if (latent_height, latent_width) != config.input_grid:
            raise ValueError(
                f"the stage-2 model takes {config.input_grid_height}x{config.input_grid_width} code grids "
                f"(input_grid_height x input_grid_width) but the stage-1 VQ-VAE's latent grid is "
                f"{latent_height}x{latent_width}; they must be equal"
            )

    def _check_codes(self, name: str, codes, field: str, grid: tuple[int, int], grid_name: str) -> None:
        """`codes`: integers in [0, config.<field>), shape (batch_size >= 1, *grid)."""
        check_code_grids(name, codes, getattr(self.config, field), field, grid, grid_name)

    def _check_input_ids(self, input_ids, name: str = "input_ids") -> None:
        self._check_codes(name, input_ids, "input_num_embeddings", self.config.input_grid, "the stage-1 grid")

    def _check_latent_indices(self, latent_indices) -> None:
        layout = self.quantizer.code_layout
        if layout.num_stages is not None:
            grid = self.config.latent_grid
            layout.check_codes("latent_indices", latent_indices, ("latent_grid_height", "latent_grid_width"), grid)
            return
        self._check_codes("latent_indices", latent_indices, "num_embeddings", self.config.latent_grid, "the stage-2 grid")

    # ----------------------------------------------------------------------------------------------- stages

    def encode(self, input_ids: torch.LongTensor, return_dict: bool | None = None) -> HierarchicalVQVAEEncoderOutput | tuple:
        """Stage-1 code grids -> stage-2 latents z_e, their quantized z_q and the stage-2 codes."""
        self._check_input_ids(input_ids)
        latents = self.encoder(input_ids.long())
        quantized = self.quantizer(latents)
        output = HierarchicalVQVAEEncoderOutput(latents=latents, quantized=quantized.quantized, indices=quantized.indices)
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    def conditioning_map(self, quantized: torch.Tensor) -> torch.Tensor:
        """Stage-2 latents (B, D, latent grid) -> the decoder's conditioning map (B, conditioning_channels, stage-1
        grid). `conditioning="decoded"`: one linear map from all the latents to a grid a third of the stage-1 grid's
        side (the encoder's last layer in reverse: a latent has no place in the frame, each one sees all of it),
        nearest upsampling, 3x3 convolutions. `"upsampled"`: each latent laid over its band of rows, 3x3
        convolutions."""
        hidden = quantized.to(self.conditioning_network.weight.dtype)
        if self.latents_to_grid is not None:
            hidden = self.latents_to_grid(hidden.flatten(1)).view(len(hidden), -1, *self.config.conditioning_grid)
        hidden = self.conditioning_network(F.interpolate(hidden, size=self.config.input_grid, mode="nearest"))
        for layer in self.conditioning_layers:
            hidden = layer(F.relu(hidden))
        return hidden

    def forward(
        self,
        input_ids: torch.LongTensor,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        auxiliary_loss_weight: float | None = None,
    ) -> HierarchicalVQVAEOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, input_grid_height, input_grid_width)`):
                Stage-1 code grids, values in `[0, input_num_embeddings)`; encoded, and predicted by the decoder.
            labels (*optional*): the codes to score, by default `input_ids` (the model reconstructs its input).
            output_hidden_states (`bool`, *optional*): also return the encoder's and the decoder's activations
                (default: `config.output_hidden_states`).
            return_dict (`bool`, *optional*): return a [`HierarchicalVQVAEOutput`] or a tuple.
            auxiliary_loss_weight (`float`, *optional*): the auxiliary loss's weight in `loss` for this call (default:
                `config.auxiliary_loss_weight`); training passes `config.auxiliary_loss_weight_at(step, max_train_steps)`.
        """
        self._check_input_ids(input_ids)
        if labels is None:
            labels = input_ids
        else:
            self._check_input_ids(labels, name="labels")
            check_same_batch("`labels`", labels, "`input_ids`", input_ids)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        encoder_hidden_states = [] if output_hidden_states else None
        quantized = self.quantizer(self.encoder(input_ids.long(), encoder_hidden_states))
        conditioning = self.conditioning_map(quantized.quantized)
        logits, decoder_hidden_states = self.decoder(
            input_ids.long(), conditioning=conditioning, output_hidden_states=bool(output_hidden_states)
        )
        nll_loss = F.cross_entropy(logits.float(), labels.long())
        loss = nll_loss + quantized.loss
        auxiliary_loss = None
        if self.auxiliary_head is not None:
            auxiliary_loss = F.cross_entropy(self.auxiliary_head(conditioning).float(), labels.long())
            if auxiliary_loss_weight is None:
                auxiliary_loss_weight = self.config.auxiliary_loss_weight
            loss = loss + auxiliary_loss_weight * auxiliary_loss
        output = HierarchicalVQVAEOutput(
            loss=loss,
            nll_loss=nll_loss,
            auxiliary_loss=auxiliary_loss,
            codebook_loss=quantized.codebook_loss,
            commitment_loss=quantized.commitment_loss,
            perplexity=quantized.perplexity,
            logits=logits,
            latent_indices=quantized.indices,
            encoder_hidden_states=tuple(encoder_hidden_states) if output_hidden_states else None,
            decoder_hidden_states=decoder_hidden_states,
        )
        return output if self._use_return_dict(return_dict) else output.to_tuple()

    def decode_logits(self, input_ids: torch.LongTensor, latent_indices: torch.LongTensor) -> torch.Tensor:
        """The decoder's logits (B, input_num_embeddings, input grid) of each stage-1 code given the codes before it
        in raster order and the stage-2 codes `latent_indices` (teacher forcing)."""
        self._check_input_ids(input_ids)
        self._check_latent_indices(latent_indices)
        check_same_batch("`latent_indices`", latent_indices, "`input_ids`", input_ids)
        conditioning = self.conditioning_map(self.quantizer.lookup(latent_indices))
        return self.decoder(input_ids.long(), conditioning=conditioning)[0]

    @torch.no_grad()
    def bits_per_grid(self, input_ids: torch.LongTensor, latent_indices: torch.LongTensor | None = None) -> torch.Tensor:
        """Negative log2-likelihood of each stage-1 grid under the decoder given its stage-2 codes (those the encoder
        gives, unless `latent_indices` are passed): a (batch_size,) tensor, in bits per whole grid."""
        if latent_indices is None:
            latent_indices = self.encode(input_ids).indices
        logits = self.decode_logits(input_ids, latent_indices).float()
        nats = F.cross_entropy(logits, input_ids.long(), reduction="none").flatten(1).sum(1)
        return nats / math.log(2)

    @torch.no_grad()
    def sample(
        self,
        latent_indices: torch.LongTensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
    ) -> torch.LongTensor:
        """
        Draw one stage-1 code grid per stage-2 code grid in raster order with the decoder; returns a (batch_size,
        input_grid_height, input_grid_width) long tensor.

        Args:
            latent_indices: (batch_size, latent_grid_height, latent_grid_width) stage-2 codes.
            temperature: divides the logits; below 1 sharpens, above 1 flattens; at least 1e-3.
            generator: the source of randomness; cached and plain sampling draw the same codes for the same seed.
            use_cache: the gated PixelCNN's cached incremental sampler; False runs the whole decoder per position.
            progress_callback: called after each row as `progress_callback(rows_done, input_grid_height)`.
        """
        self._check_latent_indices(latent_indices)
        check_temperature(temperature)
        conditioning = self.conditioning_map(self.quantizer.lookup(latent_indices.to(self.device)))
        return self.decoder.sample(
            latent_indices.shape[0], *self.config.input_grid, conditioning=conditioning, temperature=temperature,
            generator=generator, use_cache=use_cache, progress_callback=progress_callback,
        )

    def _use_return_dict(self, return_dict: bool | None) -> bool:
        return return_dict if return_dict is not None else self.config.return_dict


__all__ = ["HierarchicalVQVAEEncoderOutput", "HierarchicalVQVAEModel", "HierarchicalVQVAEOutput"]

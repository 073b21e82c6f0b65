"""Gated PixelCNN prior over VQ-VAE code grids (van den Oord et al. 2016, arXiv 1606.05328), with cached
incremental sampling (Ramachandran et al. 2017, arXiv 1704.06001). Its layers are
`layers.gated_pixelcnn.GatedPixelCNNLayer`, which says how causality is kept without masks.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel  # noqa: F401  diffusers finds a pipeline component's base class on its module
from transformers.utils import ModelOutput

from ...layers.gated_pixelcnn import GatedPixelCNN
from ...layers.sampling import check_temperature
from .configuration_pixelcnn_prior import PixelCNNPriorConfig
from .model_card_pixelcnn_prior import prior_model_card
from ...input_checks import check_batch_size, check_generator
from ...modeling_utils import CodeGridPriorMixin, HubPreTrainedModel, fixed_codebook_error


@dataclass
class PixelCNNPriorOutput(ModelOutput):
    r"""
    Output of [`PixelCNNPriorModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Mean negative log-likelihood of the labels per code, in nats.
        logits (`torch.FloatTensor` of shape `(batch_size, num_embeddings, grid_height, grid_width)`):
            Unnormalised log-probabilities of each code at each position, given the codes before it in raster
            order (and the class label).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states`):
            The embedded input codes and each gated layer's horizontal-stack output, each of shape
            `(batch_size, hidden_channels, grid_height, grid_width)`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class PixelCNNPriorModel(CodeGridPriorMixin, HubPreTrainedModel):
    r"""
    A gated PixelCNN over a grid of codes from a codebook of K: code embedding, `num_layers` gated layers with a
    vertical and a horizontal stack, skip connections summed into two 1x1 output layers giving K logits per
    position. Optionally class-conditional.

    `model(input_ids=codes, labels=codes).loss` is the mean negative log-likelihood per code in nats;
    `model.sample(batch_size)` draws code grids (cached incremental sampling by default).
    """

    config_class = PixelCNNPriorConfig
    base_model_prefix = "prior"
    main_input_name = "input_ids"
    # Each gated layer's activations are recomputed in the backward pass (`gradient_checkpointing_enable()`).
    supports_gradient_checkpointing = True
    # hf-vqvae 0.1.0 kept the PixelCNN's modules at the top of the prior.
    legacy_key_mapping = {r"^(code_embedding|layers|output_hidden|output_logits)\.": r"pixelcnn.\1."}

    def __init__(self, config: PixelCNNPriorConfig):
        super().__init__(config)
        self.pixelcnn = GatedPixelCNN(
            config.num_embeddings, config.hidden_channels, config.num_layers, config.kernel_size, config.skip_channels,
            num_classes=config.num_classes,
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        """The code embedding (one row per code), what transformers and PEFT call the input embeddings."""
        return self.pixelcnn.code_embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.pixelcnn.code_embedding = value

    def resize_token_embeddings(self, *args, **kwargs):
        """Refused: the prior's codes are a VQ-VAE's codebook, and its output layer has one logit per code."""
        raise fixed_codebook_error("a PixelCNN prior", "num_embeddings", "PixelCNNPriorConfig")

    def model_card(self, repo_id: str, **card_fields):
        """The model card `push_to_hub` uploads (`dataset_name`, `metrics`, `image_path`)."""
        return prior_model_card(self.config, repo_id, **card_fields)

    # ----------------------------------------------------------------------------------------------- forward

    def _logits(self, input_ids: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """Logits (batch, K, height, width) for unchecked codes; any grid size works, since nothing depends on it."""
        return self.pixelcnn(input_ids, class_labels)[0]

    def forward(
        self,
        input_ids: torch.LongTensor,
        class_labels: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> PixelCNNPriorOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, grid_height, grid_width)`):
                Code grids, values in `[0, num_embeddings)`.
            class_labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                One label in `[0, num_classes)` per grid; required by a conditional prior, refused by an
                unconditional one.
            labels (`torch.LongTensor` of shape `(batch_size, grid_height, grid_width)`, *optional*):
                Codes to score; for a prior these are the inputs themselves: `model(input_ids=codes, labels=codes)`.
            output_hidden_states (`bool`, *optional*):
                Also return the embedded input and each layer's output (default: `config.output_hidden_states`).
            return_dict (`bool`, *optional*):
                Return a [`PixelCNNPriorOutput`] (default: `config.return_dict`) or a tuple.
        """
        self._check_codes("input_ids", input_ids)
        class_labels = self._checked_class_labels(class_labels, input_ids.shape[0])
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        logits, hidden_states = self.pixelcnn(input_ids, class_labels, output_hidden_states=bool(output_hidden_states))
        loss = None
        if labels is not None:
            loss = self._code_loss(logits, input_ids, labels)
        output = PixelCNNPriorOutput(loss=loss, logits=logits, hidden_states=hidden_states)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def bits_per_code(self, input_ids: torch.LongTensor, class_labels: torch.LongTensor | None = None) -> torch.Tensor:
        """Negative log2-likelihood of each grid divided by its number of codes: a (batch_size,) tensor."""
        self._check_codes("input_ids", input_ids)
        class_labels = self._checked_class_labels(class_labels, input_ids.shape[0])
        logits = self._logits(input_ids, class_labels).float()
        nats = F.cross_entropy(logits, input_ids.long(), reduction="none").flatten(1).mean(1)
        return nats / math.log(2)

    # ----------------------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(
        self,
        batch_size: int | None = None,
        class_labels: torch.LongTensor | Sequence[int] | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
    ) -> torch.LongTensor:
        """
        Draw `batch_size` code grids in raster order; returns a (batch_size, grid_height, grid_width) long tensor.

        Args:
            batch_size: number of grids; defaults to one per class label, or 1.
            class_labels: one label per grid for a class-conditional prior (None otherwise).
            temperature: divides the logits; below 1 sharpens, above 1 flattens; at least 1e-3
                (`layers.sampling.MIN_TEMPERATURE`).
            generator: the source of randomness, or a list of `batch_size` generators, one per grid (grid i is then
                the grid a batch of one draws with generator i). Both samplers draw one uniform number per grid and
                position in the same order, so a seeded generator gives the same codes with and without the cache.
            use_cache: the cached incremental sampler (computes the vertical stack once per row and the horizontal
                stack once per position); False runs the whole network once per position (the reference).
            progress_callback: called after each row as `progress_callback(rows_done, grid_height)`.
        """
        if batch_size is None:
            batch_size = 1 if class_labels is None else max(1, torch.as_tensor(class_labels).numel())
        check_batch_size(batch_size)
        check_temperature(temperature)
        check_generator(generator, batch_size)
        class_labels = self._checked_class_labels(class_labels, batch_size)
        config = self.config
        return self.pixelcnn.sample(
            batch_size, config.grid_height, config.grid_width, class_labels=class_labels, temperature=temperature,
            generator=generator, use_cache=use_cache, progress_callback=progress_callback,
        )


__all__ = ["PixelCNNPriorModel", "PixelCNNPriorOutput"]

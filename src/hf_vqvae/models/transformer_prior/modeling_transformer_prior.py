"""A transformer prior over VQ-VAE code grids, built on a causal language model of transformers
(`AutoModelForCausalLM`, a Llama by default) and sampled through its `generate()`: the prior of VQGAN's transformer,
LlamaGen or Chameleon over the codes of the VQ-VAE paper. A drop-in for the PixelCNN prior: the same forward
(`input_ids`, `class_labels`, `labels`), `bits_per_code`, `sample` and checks, so every pipeline takes either.
"""

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, GenerationConfig, LogitsProcessorList, PreTrainedModel  # noqa: F401  diffusers finds a pipeline component's base class on its module
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.utils import ModelOutput

from ...input_checks import check_batch_size, check_generator, is_integer
from ...layers.sampling import check_temperature
from ...modeling_utils import CodeGridPriorMixin, HubPreTrainedModel, fixed_codebook_error
from .configuration_transformer_prior import TransformerPriorConfig
from .generation_transformer_prior import DrawFromGenerator, RowProgress
from .model_card_transformer_prior import transformer_prior_model_card


@dataclass
class TransformerPriorOutput(ModelOutput):
    r"""
    Output of [`TransformerPriorModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Mean negative log-likelihood of the labels per code, in nats.
        logits (`torch.FloatTensor` of shape `(batch_size, num_embeddings, grid_height, grid_width)`):
            Unnormalised log-probabilities of each code at each position, given the codes before it in raster
            order and the prefix token (the class label), laid out as the PixelCNN prior's (the class dimension
            second, as `F.cross_entropy(logits, codes)` takes it).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states`):
            The decoder's hidden states (its input embeddings and each layer's output), each of shape
            `(batch_size, grid_height * grid_width, hidden_size)`: the prefix token and every code but the last. With
            `output_hidden_states` a list of indices, the states it does not select are None.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions`):
            Each decoder layer's attention weights after the softmax, of shape
            `(batch_size, num_attention_heads, grid_height * grid_width, grid_height * grid_width)`, over the same
            sequence. Only the eager attention computes them (`attn_implementation="eager"`); SDPA and flash attention
            return none, as in transformers' own models.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def _check_sampling_options(top_k, top_p, guidance_scale, config: TransformerPriorConfig) -> None:
    if top_k is not None and (not is_integer(top_k) or not 1 <= top_k <= config.num_embeddings):
        raise ValueError(
            f"top_k must be None (no cut) or an integer in [1, {config.num_embeddings}] (num_embeddings), got {top_k!r}"
        )
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None (no cut) or a number in (0, 1], got {top_p!r}")
    if not _is_number(guidance_scale) or not 0 <= guidance_scale < math.inf:
        raise ValueError(
            f"guidance_scale must be a finite number >= 0 (1: no guidance, 0: unconditional), got {guidance_scale!r}"
        )
    if guidance_scale != 1:
        if config.num_classes == 0:
            raise ValueError(
                f"guidance_scale={guidance_scale!r} needs a class-conditional prior; this one is unconditional "
                "(num_classes=0): leave guidance_scale at 1"
            )
        if config.class_dropout_prob == 0:
            raise ValueError(
                f"guidance_scale={guidance_scale!r} needs a prior trained with label dropout (class_dropout_prob > 0), "
                "which learns the codes without a label too; this one has class_dropout_prob=0: leave guidance_scale "
                "at 1"
            )


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class TransformerPriorModel(CodeGridPriorMixin, HubPreTrainedModel):
    r"""
    A transformer prior over a grid of codes from a codebook of K: a causal language model of transformers (`decoder`,
    built by `AutoModelForCausalLM` from `config.decoder_config`) over one prefix token (the class label, or the null
    label) followed by the codes in raster order. Optionally class-conditional, with label dropout in training for
    classifier-free guidance at sampling.

    `model(input_ids=codes, labels=codes).loss` is the mean negative log-likelihood per code in nats;
    `model.sample(batch_size)` draws code grids through the decoder's `generate()` (KV cache, temperature, top-k,
    top-p, guidance).
    """

    config_class = TransformerPriorConfig
    base_model_prefix = "prior"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # The attention implementations are the decoder's; the prior itself has none.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: TransformerPriorConfig):
        super().__init__(config)
        self.decoder = AutoModelForCausalLM.from_config(config.decoder_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        """The decoder's token embedding: one row per code, class label and the null label."""
        return self.decoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.decoder.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        """The decoder's output layer (its token embedding itself when `config.tie_word_embeddings`)."""
        return self.decoder.get_output_embeddings()

    def resize_token_embeddings(self, *args, **kwargs):
        """Refused: the prior's codes are a VQ-VAE's codebook, and its tokens follow from it and the classes."""
        raise fixed_codebook_error("a transformer prior", "num_embeddings", "TransformerPriorConfig")

    def model_card(self, repo_id: str, **card_fields):
        """The model card `push_to_hub` uploads (`dataset_name`, `metrics`, `image_path`)."""
        return transformer_prior_model_card(self.config, repo_id, **card_fields)

    # ----------------------------------------------------------------------------------------------- tokens

    def prefix_ids(self, class_labels: torch.LongTensor | None, batch_size: int) -> torch.LongTensor:
        """The (batch_size, 1) prefix tokens: `num_embeddings + label`, or the null label where there is no label."""
        config = self.config
        if class_labels is None:
            return torch.full((batch_size, 1), config.null_label_id, dtype=torch.long, device=self.device)
        return (class_labels + config.num_embeddings).view(batch_size, 1)

    # ----------------------------------------------------------------------------------------------- forward

    def _logits(
        self,
        input_ids: torch.Tensor,
        class_labels: torch.Tensor | None,
        output_hidden_states: bool | int | list[int] = False,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, ModelOutput]:
        """Logits (batch, K, height, width) over the codes, and the decoder's output (its hidden states and
        attentions as asked), for checked inputs."""
        batch_size, height, width = input_ids.shape
        config = self.config
        prefix = self.prefix_ids(class_labels, batch_size)
        if self.training and class_labels is not None and config.class_dropout_prob > 0:
            dropped = torch.rand(batch_size, 1, device=self.device) < config.class_dropout_prob
            prefix = prefix.masked_fill(dropped, config.null_label_id)
        # Position i predicts code i from the prefix and codes [0, i): the last code is never an input.
        sequence = torch.cat([prefix, input_ids.long().flatten(1)[:, :-1]], dim=1)
        # The decoder records its hidden states and attentions itself (transformers' output capture); the flags pass
        # through as given, so that a list of indices selects hidden states as it does in transformers' models.
        output = self.decoder(
            input_ids=sequence, use_cache=False, output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        # The decoder predicts its whole vocabulary; the prior's distribution is over the codes alone.
        logits = output.logits[..., : config.num_embeddings]
        return logits.transpose(1, 2).reshape(batch_size, config.num_embeddings, height, width), output

    def forward(
        self,
        input_ids: torch.LongTensor,
        class_labels: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> TransformerPriorOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, grid_height, grid_width)`):
                Code grids, values in `[0, num_embeddings)`.
            class_labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                One label in `[0, num_classes)` per grid; required by a conditional prior, refused by an
                unconditional one. In training mode a `class_dropout_prob` share of them is replaced by the null label.
            labels (`torch.LongTensor` of shape `(batch_size, grid_height, grid_width)`, *optional*):
                Codes to score; for a prior these are the inputs themselves: `model(input_ids=codes, labels=codes)`.
            output_hidden_states (`bool`, `int` or `list[int]`, *optional*):
                Also return the decoder's hidden states (default: `config.output_hidden_states`); an index or a list of
                them (negative ones count from the end) keeps only those states, the others coming back as None.
            output_attentions (`bool`, *optional*):
                Also return the decoder's attention weights (default: `config.output_attentions`); needs the eager
                attention (`attn_implementation="eager"`).
            return_dict (`bool`, *optional*):
                Return a [`TransformerPriorOutput`] (default: `config.return_dict`) or a tuple.
        """
        self._check_codes("input_ids", input_ids)
        class_labels = self._checked_class_labels(class_labels, input_ids.shape[0])
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        logits, decoder_output = self._logits(
            input_ids, class_labels, output_hidden_states=output_hidden_states, output_attentions=bool(output_attentions)
        )
        loss = None
        if labels is not None:
            loss = self._code_loss(logits, input_ids, labels)
        output = TransformerPriorOutput(
            loss=loss, logits=logits, hidden_states=decoder_output.hidden_states, attentions=decoder_output.attentions
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def bits_per_code(self, input_ids: torch.LongTensor, class_labels: torch.LongTensor | None = None) -> torch.Tensor:
        """Negative log2-likelihood of each grid divided by its number of codes: a (batch_size,) tensor (no label
        dropout, whatever the mode)."""
        self._check_codes("input_ids", input_ids)
        class_labels = self._checked_class_labels(class_labels, input_ids.shape[0])
        training = self.training
        self.eval()
        try:
            logits = self._logits(input_ids, class_labels)[0].float()
        finally:
            self.train(training)
        nats = F.cross_entropy(logits, input_ids.long(), reduction="none").flatten(1).mean(1)
        return nats / math.log(2)

    # ----------------------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample(
        self,
        batch_size: int | None = None,
        class_labels: torch.LongTensor | Sequence[int] | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        use_cache: bool = True,
        progress_callback: Callable[[int, int], None] | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance_scale: float = 1.0,
        cache_implementation: str | None = None,
    ) -> torch.LongTensor:
        """
        Draw `batch_size` code grids in raster order through the decoder's `generate()`; returns a
        (batch_size, grid_height, grid_width) long tensor. The arguments the PixelCNN prior's `sample` takes mean
        the same here.

        Args:
            batch_size: number of grids; defaults to one per class label, or 1.
            class_labels: one label per grid for a class-conditional prior (None otherwise).
            temperature: divides the logits (transformers' `TemperatureLogitsWarper`); at least 1e-3
                (`layers.sampling.MIN_TEMPERATURE`).
            generator: the source of randomness, or a list of `batch_size` generators, one per grid (grid i is then
                the grid a batch of one draws with generator i). One uniform number per grid and position, drawn in
                the same order with and without the cache, so a seeded generator gives the same codes with both.
            use_cache: `generate()` with the decoder's KV cache; False runs the decoder over the whole sequence at
                each position (the reference).
            progress_callback: called after each row as `progress_callback(rows_done, grid_height)`.
            top_k: keep only the `top_k` most likely codes at each position (None: all).
            top_p: keep the most likely codes whose probabilities add up to `top_p` (nucleus sampling; None: all).
            guidance_scale: classifier-free guidance, through transformers' `generate(guidance_scale=...)`: the
                conditional and the unconditional (null-label) log-probabilities u + s (c - u). 1 samples the
                conditional model, 0 the unconditional one, above 1 follows the label more closely. Needs a
                class-conditional prior trained with `class_dropout_prob > 0`.
            cache_implementation: `generate()`'s cache (None: dynamic; "static" preallocates it, which
                `torch.compile` on a GPU needs).
        """
        if batch_size is None:
            batch_size = 1 if class_labels is None else max(1, torch.as_tensor(class_labels).numel())
        check_batch_size(batch_size)
        check_temperature(temperature)
        check_generator(generator, batch_size)
        _check_sampling_options(top_k, top_p, guidance_scale, self.config)
        class_labels = self._checked_class_labels(class_labels, batch_size)
        config = self.config
        prefix = self.prefix_ids(class_labels, batch_size)
        num_codes = config.grid_height * config.grid_width
        generation_config = GenerationConfig(
            max_new_tokens=num_codes, do_sample=False, use_cache=use_cache, cache_implementation=cache_implementation,
            # Only codes are drawn, never a label token.
            suppress_tokens=list(range(config.num_embeddings, config.vocab_size)),
            guidance_scale=guidance_scale if guidance_scale != 1 else None,
            bos_token_id=None, eos_token_id=None, pad_token_id=None,
        )
        processors = LogitsProcessorList()
        if temperature != 1:
            processors.append(TemperatureLogitsWarper(float(temperature)))
        if top_k is not None:
            processors.append(TopKLogitsWarper(int(top_k)))
        if top_p is not None and top_p < 1:
            processors.append(TopPLogitsWarper(float(top_p)))
        processors.append(DrawFromGenerator(generator))
        streamer = None
        if progress_callback is not None:
            streamer = RowProgress(config.grid_height, config.grid_width, progress_callback)
        sequences = self.decoder.generate(
            prefix,
            attention_mask=torch.ones_like(prefix),
            generation_config=generation_config,
            logits_processor=processors,
            negative_prompt_ids=torch.full_like(prefix, config.null_label_id) if guidance_scale != 1 else None,
            streamer=streamer,
        )
        return sequences[:, 1:].reshape(batch_size, config.grid_height, config.grid_width)


__all__ = ["TransformerPriorModel", "TransformerPriorOutput"]

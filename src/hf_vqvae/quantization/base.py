"""What every quantizer of the family shares: its output, usage reporting, the input checks and the fp32 projections.

A quantizer takes latents (B, D, *spatial) in any dtype, computes in fp32 whatever the autocast context, and returns
a `QuantizerOutput` whose `quantized` has the input's shape and dtype. In training mode every process must call it
together: usage counts (and any other state) are reduced across processes.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from .code_layout import CodeLayout
from .distributed import all_reduce_sum


@dataclass
class QuantizerOutput(ModelOutput):
    """
    Args:
        quantized: z_q with the gradient the quantizer passes back (straight through, or by the rotation trick), same
            shape and dtype as the input.
        indices: the codes: one integer in [0, K) per position, the input's shape without the channel axis
            (batch, *spatial); for residual VQ one per stage, (batch, N, *spatial), where a stage dropped by quantizer
            dropout in training holds -1.
        loss: the quantizer's share of the training loss: codebook_loss + beta * commitment_loss (+ the entropy
            penalty of LFQ).
        commitment_loss: ||z_e - sg[z_q]||^2 (mean over elements, summed over residual stages), before beta.
        codebook_loss: ||sg[z_e] - e||^2 (mean over elements); zero under the EMA rule and for FSQ and LFQ.
        perplexity: exp(entropy) of the code distribution in this batch (all processes in training, this process in
            evaluation); for residual VQ the mean over the stages used.
        code_counts: how often each code was chosen in this batch (all processes in training, this process in
            evaluation), shape (K,), or (N, K) for residual VQ.
        entropy_loss: LFQ's entropy penalty (mean per-code entropy minus gamma x the entropy of the mean code
            distribution), before its weight; None for the other quantizers.
    """

    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None
    loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    code_counts: torch.FloatTensor | None = None
    entropy_loss: torch.FloatTensor | None = None


def count_per_code(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    # index_add_ rather than bincount, which waits on the device to learn the output size.
    flat = indices.reshape(-1)
    return torch.zeros(num_codes, device=indices.device).index_add_(0, flat, torch.ones((), device=flat.device).expand_as(flat))


def perplexity_of(code_counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the distribution the counts (..., K) give, per leading index."""
    probabilities = code_counts / code_counts.sum(dim=-1, keepdim=True).clamp(min=1)
    return torch.exp(-torch.sum(probabilities * torch.log(probabilities.clamp(min=1e-10)), dim=-1))


def project_channels(linear: nn.Linear | None, latents: torch.Tensor) -> torch.Tensor:
    """`linear` applied to the channel axis of (B, C, L) latents in fp32, without moving the channels last; None is
    the identity."""
    if linear is None:
        return latents
    # One batched product over the expanded weight: 3-5x faster, forward and backward, than matmul's broadcast (which
    # copies transposed latents) or a 1x1 convolution at these shapes.
    weight = linear.weight.float().expand(latents.shape[0], -1, -1)
    if linear.bias is None:
        return torch.bmm(weight, latents)
    return torch.baddbmm(linear.bias.float()[None, :, None], weight, latents)


def channel_projections(embedding_dim: int, code_dim: int) -> tuple[nn.Linear | None, nn.Linear | None]:
    """Linear maps into and out of the code space (fp32, with biases), or (None, None) when the dimensions agree."""
    if code_dim == embedding_dim:
        return None, None
    fp32 = dict(dtype=torch.float32)
    return nn.Linear(embedding_dim, code_dim, **fp32), nn.Linear(code_dim, embedding_dim, **fp32)


class Quantizer(nn.Module):
    """The interface of the quantizer family.

    Subclasses set `num_embeddings` (K, values per index), `embedding_dim` (D, the input's channels), `layout`
    (a `CodeLayout`), call `_register_usage()` and implement `forward(latents) -> QuantizerOutput` and
    `lookup(indices) -> latents`.

    Usage reporting, the same for every quantizer: `code_counts` and `perplexity` in each output, and over a window of
    training steps `distinct_codes_used`, `usage_histogram` and `reset_usage()`, from the persistent buffer
    `codes_used` (assignments per code since the last reset, all processes).
    """

    num_embeddings: int
    embedding_dim: int
    layout: CodeLayout

    def _register_usage(self, shape: tuple[int, ...] | None = None) -> None:
        self.register_buffer("codes_used", torch.zeros(shape or (self.num_embeddings,), dtype=torch.float32))

    @property
    def code_layout(self) -> CodeLayout:
        """How the codes are shaped and how a prior reads them."""
        return self.layout

    @torch.no_grad()
    def reset_usage(self) -> None:
        """Start a new window (an epoch, say) for `codes_used` / `distinct_codes_used`."""
        self.codes_used.zero_()

    @property
    def distinct_codes_used(self) -> int:
        """Number of codes chosen at least once in training since the last `reset_usage` (for residual VQ, distinct
        (stage, code) pairs, out of N * K)."""
        return int((self.codes_used > 0).sum())

    @property
    def usage_histogram(self) -> torch.Tensor:
        """Assignments per code since the last `reset_usage` (all processes), shape (K,) ((N, K) for residual VQ)."""
        return self.codes_used.clone()

    def initialize_state(self) -> None:
        """The state a fresh quantizer has, written through transformers' initialization helpers, which leave tensors
        loaded from a checkpoint alone: what a model's `_init_weights` calls for each quantizer module."""
        init.zeros_(self.codes_used)

    def _check_latents(self, latents: torch.Tensor) -> None:
        if not isinstance(latents, torch.Tensor) or latents.ndim < 3 or latents.shape[1] != self.embedding_dim:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(
                f"{type(self).__name__} expects latents of shape (batch, {self.embedding_dim}, *spatial) "
                f"with at least one spatial axis, got {shape}"
            )

    def _checked_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """`indices` (batch, *spatial) as a long tensor, checked for dtype and range."""
        if not isinstance(indices, torch.Tensor) or indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.is_complex():
            kind = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise ValueError(f"code indices must be an integer tensor, got dtype {kind}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_embeddings):
            raise ValueError(
                f"code indices must lie in [0, {self.num_embeddings}), got values in "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        return indices.long()

    @torch.no_grad()
    def _record_usage(self, code_counts: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Training bookkeeping of a quantizer whose only state is its usage: the counts of every process summed
        (returned) and added to `codes_used`, unless a latent of some process is not finite (the count is reduced
        with them, so every rank decides alike)."""
        non_finite = (~torch.isfinite(latents)).sum(dtype=torch.float32).reshape(1)
        code_counts, non_finite = all_reduce_sum(code_counts, non_finite)
        self.codes_used += torch.where(non_finite[0] == 0, code_counts, 0.0)
        return code_counts


def output_in_input_layout(quantized: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Flattened (B, D, L) fp32 `quantized` back in the shape and dtype of the `latents` (B, D, *spatial)."""
    return quantized.reshape(latents.shape).to(latents.dtype)


def spatial_shape(latents: torch.Tensor) -> tuple[int, ...]:
    """(B, *spatial) of (B, D, *spatial) latents: the shape of one index per position."""
    return (latents.shape[0], *latents.shape[2:])


def flat_indices(indices: torch.Tensor) -> torch.Tensor:
    """Indices (B, *spatial) as (B, L)."""
    return indices.reshape(indices.shape[0], math.prod(indices.shape[1:]))

"""Lookup-free quantization (Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is Key to Visual Generation",
MAGVIT-v2), with its entropy penalty.

No codebook to search: each of b = log2(K) channels is quantized to its sign, so the codes are the corners {-1, 1}^b
and the code index is the binary number of the channels' signs (channel i worth 2**i, positive = 1), an integer in
[0, K) a prior models as a codebook index. The gradient passes the sign straight through; the commitment term
||z - sg[sign(z)]||^2 keeps the latents near the corners.

The entropy penalty (the paper's eq. 5) makes each latent's code confident and the batch use every code:

    E_n[H(p(. | z_n))] - gamma * H(E_n[p(. | z_n)]),   p(c | z) = softmax_c(-||z - c||^2 / tau) over the K corners.

As ||c||^2 = b for every corner, p(c | z) is a product of independent bits, bit i on with probability
sigmoid(4 z_i / tau): the per-latent entropy is the sum of b binary entropies, exact and cheap. The entropy of the
mean distribution does not factorise; it is computed exactly over the K corners, a cache-sized block of latents at
a time, and its backward pass recomputes each block's probabilities instead of storing (N x K) of them. The mean runs
over the latents of every process (summed across processes), as one process fed the whole batch would take it; its
gradient is scaled by the number of processes, so that DDP's average of the processes' gradients is the gradient of
that one process.
"""

import math

import torch
import torch.nn.functional as F

from .base import (
    Quantizer,
    QuantizerOutput,
    channel_projections,
    count_per_code,
    flat_indices,
    output_in_input_layout,
    perplexity_of,
    project_channels,
    spatial_shape,
)
from .code_layout import CodeLayout
from .distributed import all_reduce_sum, world_size


# (latent x code) probabilities held at a time by the entropy of the mean code distribution.
ENTROPY_CHUNK_SCORES = 2**20


def _corner_bits(num_bits: int, device: torch.device) -> torch.Tensor:
    """(K, b): bit i of code k, as 0. or 1."""
    codes = torch.arange(2**num_bits, device=device)
    return ((codes[:, None] >> torch.arange(num_bits, device=device)) & 1).float()


def _chunks(rows: int, num_codes: int):
    step = max(1, ENTROPY_CHUNK_SCORES // num_codes)
    return range(0, rows, step), step


# exp() of log-probabilities below this would give subnormal floats, which the CPU computes tens of times slower;
# probabilities below e^-80 (1.8e-35) change neither the mean distribution nor its gradient at fp32 precision.
MIN_LOG_PROBABILITY = -80.0


def _code_probabilities(bit_logits: torch.Tensor, corner_bits: torch.Tensor) -> torch.Tensor:
    """p(code | latent), (rows, K), from per-bit logits (rows, b): exp of sum_i log sigmoid(+-x_i), written as
    sum_i log sigmoid(-x_i) + x . bits (log sigmoid(x) - log sigmoid(-x) = x)."""
    log_probabilities = F.logsigmoid(-bit_logits).sum(dim=1, keepdim=True) + bit_logits @ corner_bits.t()
    return log_probabilities.clamp_(min=MIN_LOG_PROBABILITY).exp_()


class _MeanCodeDistributionEntropy(torch.autograd.Function):
    """H(mean over latents of p(. | z)), for per-bit logits (rows, b); the mean runs over every process's rows."""

    @staticmethod
    def forward(ctx, bit_logits):
        rows, num_bits = bit_logits.shape
        corner_bits = _corner_bits(num_bits, bit_logits.device).to(bit_logits.dtype)
        summed = bit_logits.new_zeros(2**num_bits)
        starts, step = _chunks(rows, 2**num_bits)
        for start in starts:
            summed += _code_probabilities(bit_logits[start : start + step], corner_bits).sum(dim=0)
        total_rows = bit_logits.new_tensor([rows])
        summed, total_rows = all_reduce_sum(summed, total_rows)
        mean = summed / total_rows.clamp(min=1)
        log_mean = mean.clamp(min=torch.finfo(mean.dtype).tiny).log()
        ctx.save_for_backward(bit_logits, log_mean, total_rows)
        return -(mean * log_mean).sum()

    @staticmethod
    def backward(ctx, grad_entropy):
        bit_logits, log_mean, total_rows = ctx.saved_tensors
        rows, num_bits = bit_logits.shape
        corner_bits = _corner_bits(num_bits, bit_logits.device).to(bit_logits.dtype)
        # dH / d mean_k = -(log mean_k + 1); d p(k | z_n) / d x_ni = p(k | z_n) (bit_ki - sigmoid(x_ni)).
        code_weights = -(log_mean + 1) * grad_entropy
        grad = torch.empty_like(bit_logits)
        starts, step = _chunks(rows, 2**num_bits)
        for start in starts:
            block = bit_logits[start : start + step]
            weighted = _code_probabilities(block, corner_bits).mul_(code_weights)
            grad[start : start + step] = weighted @ corner_bits - torch.sigmoid(block) * weighted.sum(dim=1, keepdim=True)
        return grad * (world_size() / total_rows.clamp(min=1))


def _binary_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of a bit on with probability sigmoid(logits), stable for large |logits|."""
    on = torch.sigmoid(logits)
    return on * F.softplus(-logits) + (1 - on) * F.softplus(logits)


class LookupFreeQuantizer(Quantizer):
    """LFQ over (B, D, *spatial) latents.

    Args:
        num_embeddings: K, a power of two: log2(K) sign bits per latent.
        embedding_dim: D, the input's channels; when it differs from log2(K) linear maps (`project_in`,
            `project_out`) take the latents to the bits and back.
        commitment_cost: weight of ||z - sg[sign(z)]||^2.
        entropy_weight: weight of the entropy penalty (MAGVIT-v2: 0.1).
        diversity_gamma: gamma, the weight of the batch entropy inside the penalty (1 in the paper).
        temperature: tau of p(c | z) (vector-quantize-pytorch's default 0.01).

    The penalty is computed in training only (it is zero in evaluation, where no gradient needs it).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        commitment_cost: float = 0.25,
        entropy_weight: float = 0.1,
        diversity_gamma: float = 1.0,
        temperature: float = 0.01,
    ):
        super().__init__()
        if not isinstance(num_embeddings, int) or num_embeddings < 2 or num_embeddings & (num_embeddings - 1):
            raise ValueError(f"num_embeddings of lookup-free quantization must be a power of two >= 2, got {num_embeddings!r}")
        self.num_embeddings = num_embeddings
        self.num_bits = int(math.log2(num_embeddings))
        self.embedding_dim = embedding_dim
        self.commitment_cost = commitment_cost
        self.entropy_weight = entropy_weight
        self.diversity_gamma = diversity_gamma
        self.temperature = temperature
        self.layout = CodeLayout(num_embeddings)
        self.project_in, self.project_out = channel_projections(embedding_dim, self.num_bits)
        self._register_usage()

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize `latents` of shape (B, D, *spatial)."""
        self._check_latents(latents)
        with torch.autocast(device_type=latents.device.type, enabled=False):
            code_space = project_channels(self.project_in, latents.flatten(2).float())
            signs = torch.where(code_space > 0, 1.0, -1.0)
            quantized = code_space + (signs - code_space).detach()
            place_values = (2 ** torch.arange(self.num_bits, device=latents.device))[:, None]
            indices = ((code_space.detach() > 0).long() * place_values).sum(dim=1)
            commitment_loss = (code_space - signs).square().mean()
            entropy_loss = self._entropy_penalty(code_space) if self.training else commitment_loss.new_zeros(())
            code_counts = count_per_code(indices, self.num_embeddings)
            if self.training:
                code_counts = self._record_usage(code_counts, code_space.detach())
            quantized = project_channels(self.project_out, quantized)

        return QuantizerOutput(
            quantized=output_in_input_layout(quantized, latents),
            indices=indices.view(spatial_shape(latents)),
            loss=self.commitment_cost * commitment_loss + self.entropy_weight * entropy_loss,
            commitment_loss=commitment_loss,
            codebook_loss=torch.zeros_like(commitment_loss),
            perplexity=perplexity_of(code_counts),
            code_counts=code_counts,
            entropy_loss=entropy_loss,
        )

    def _entropy_penalty(self, code_space: torch.Tensor) -> torch.Tensor:
        """Mean per-latent code entropy - gamma x entropy of the mean code distribution, for (B, b, L) latents."""
        bit_logits = (4.0 / self.temperature) * code_space.transpose(1, 2).reshape(-1, self.num_bits)
        per_latent = _binary_entropy(bit_logits).sum(dim=1).mean() if bit_logits.shape[0] else bit_logits.new_zeros(())
        return per_latent - self.diversity_gamma * _MeanCodeDistributionEntropy.apply(bit_logits)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The codes (corners of {-1, 1}^b) of `indices` (B, *spatial), returned as (B, D, *spatial)."""
        indices = self._checked_indices(indices)
        bits = (flat_indices(indices)[:, None, :] >> torch.arange(self.num_bits, device=indices.device)[:, None]) & 1
        codes = bits.float() * 2 - 1
        return project_channels(self.project_out, codes).view(indices.shape[0], self.embedding_dim, *indices.shape[1:])

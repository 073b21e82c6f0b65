"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

No codebook: each of d channels is bounded and rounded to one of L_i levels, so the codes are the grid
prod_i {levels of channel i}, K = prod_i L_i points, every one reachable. Following the paper's appendix A.1, channel
i is bounded by f(z) = tanh(z + s) * h - o with h = (L_i - 1)(1 + 1e-3) / 2, o = 0.5 for even L_i (else 0) and
s = atanh(o / h), rounded with a straight-through gradient, and divided by floor(L_i / 2) so the codes lie in [-1, 1].

The code index is the mixed-radix number of the per-channel level indices (level index of channel i times
prod_{j < i} L_j), an integer in [0, K) a prior models as a codebook index. Latents with D != d channels are mapped to
d channels and back by learned linear layers. There is no auxiliary loss and no state but the usage counts.
"""

import math

import torch

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


# Widens the bound a little so that tanh, which never reaches +-1, still reaches the outermost levels when rounded.
BOUND_EPSILON = 1e-3


class FiniteScalarQuantizer(Quantizer):
    """FSQ over (B, D, *spatial) latents.

    Args:
        levels: levels per code channel, each >= 3 (the paper suggests [8, 6, 5] for K ~ 2**8, [8, 5, 5, 5] for
            2**10, [7, 5, 5, 5, 5] for 2**12, [8, 8, 8, 6, 5] for 2**14, [8, 8, 8, 5, 5, 5] for 2**16).
        embedding_dim: D, the input's channels; when it differs from len(levels) linear maps (`project_in`,
            `project_out`) take the latents to the code channels and back.
    """

    def __init__(self, levels: list[int] | tuple[int, ...], embedding_dim: int):
        super().__init__()
        levels = list(levels)
        if not levels or any(not isinstance(level, int) or isinstance(level, bool) or level < 3 for level in levels):
            raise ValueError(
                f"levels must be a non-empty list of integers >= 3 (two levels sit where tanh's gradient vanishes; "
                f"use lookup-free quantization for binary codes), got {levels!r}"
            )
        self.levels = tuple(levels)
        self.num_embeddings = math.prod(levels)
        self.embedding_dim = embedding_dim
        self.layout = CodeLayout(self.num_embeddings)
        self.project_in, self.project_out = channel_projections(embedding_dim, len(levels))
        self._register_usage()

    def _constants(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Per-channel constants, (d, 1) columns for (B, d, L) latents (built on the fly: a few numbers, and no
        buffer that loading could leave uninitialised)."""
        levels = torch.tensor(self.levels, dtype=torch.float32, device=device)[:, None]
        half_range = (levels - 1) * (1 + BOUND_EPSILON) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        radix = torch.cumprod(torch.tensor((1, *self.levels[:-1]), dtype=torch.long, device=device), 0)[:, None]
        return dict(
            levels=levels, half_range=half_range, offset=offset, shift=torch.atanh(offset / half_range),
            half_width=torch.floor(levels / 2), radix=radix,
        )

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize `latents` of shape (B, D, *spatial)."""
        self._check_latents(latents)
        with torch.autocast(device_type=latents.device.type, enabled=False):
            code_space = project_channels(self.project_in, latents.flatten(2).float())
            constants = self._constants(latents.device)
            bounded = torch.tanh(code_space + constants["shift"]) * constants["half_range"] - constants["offset"]
            rounded = torch.round(bounded)
            # Straight through the rounding: the gradient is that of the bound.
            quantized = (bounded + (rounded - bounded).detach()) / constants["half_width"]
            # A non-finite latent gets level 0 rather than an index out of range; its batch is kept out of the usage.
            digits = (torch.nan_to_num(rounded.detach()) + constants["half_width"]).long()
            indices = (digits * constants["radix"]).sum(dim=1)
            code_counts = count_per_code(indices, self.num_embeddings)
            if self.training:
                code_counts = self._record_usage(code_counts, code_space.detach())
            quantized = project_channels(self.project_out, quantized)
            zero = quantized.new_zeros(())

        return QuantizerOutput(
            quantized=output_in_input_layout(quantized, latents),
            indices=indices.view(spatial_shape(latents)),
            loss=zero,
            commitment_loss=zero,
            codebook_loss=zero,
            perplexity=perplexity_of(code_counts),
            code_counts=code_counts,
        )

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The codes of `indices` (B, *spatial), returned as (B, D, *spatial)."""
        indices = self._checked_indices(indices)
        constants = self._constants(indices.device)
        digits = (flat_indices(indices)[:, None, :] // constants["radix"]) % constants["levels"].long()
        codes = (digits - constants["half_width"]) / constants["half_width"]
        return project_channels(self.project_out, codes).view(indices.shape[0], self.embedding_dim, *indices.shape[1:])

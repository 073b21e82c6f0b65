"""SimVQ (Zhu et al. 2024, "Addressing Representation Collapse in Vector Quantized Models with One Linear Layer").

The codebook is reparameterised: codes = C W^T, with C a frozen random (K x D) matrix and W a learned (D x D) linear
map. The codebook term ||sg[z_e] - C W^T||^2 trains W, which moves every code at once, so the whole codebook follows
the encoder and no code is left behind (the paper uses all 65,536 codes on ImageNet where a learned codebook uses a
few percent). The lookup, its losses and the gradient to z_e (straight through, or by the rotation trick) are those
of `VectorQuantizer` under the loss rule; the only state besides W is the usage count.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .base import Quantizer, QuantizerOutput, count_per_code, flat_indices, output_in_input_layout, perplexity_of, spatial_shape
from .code_layout import CodeLayout
from .vector_quantizer import _StraightThroughQuantize, codebook_rows, nearest_codes_channels_first


def frozen_random_codebook(num_embeddings: int, embedding_dim: int) -> torch.Tensor:
    """C: (K, D) draws from N(0, 1/D), the same for every model of this size (a seed of its own, on the CPU even while
    a model is built on the meta device), whatever the global random state."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(num_embeddings, embedding_dim, generator=generator, device="cpu") * embedding_dim**-0.5


class SimVectorQuantizer(Quantizer):
    """SimVQ over (B, D, *spatial) latents.

    Args:
        num_embeddings: codebook size K.
        embedding_dim: D, the input's channels and the codes' dimension.
        commitment_cost: beta, the weight of ||z_e - sg[e]||^2 (the codebook term has weight 1).
        rotation_trick: pass the gradient to z_e by the rotation trick instead of straight through.
        distance_chunk_size: as for `VectorQuantizer`.

    Tensors: ``frozen_codebook`` (C, a persistent buffer drawn from N(0, 1/D) with a fixed seed, never trained: a
    constant, as transformers expects of a buffer, and W makes any C a codebook),
    ``codebook_transform.weight`` (W) and ``codes_used``.
    """

    def __init__(
        self,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        commitment_cost: float = 0.25,
        rotation_trick: bool = False,
        distance_chunk_size: int | None = None,
    ):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.commitment_cost = commitment_cost
        self.rotation_trick = rotation_trick
        self.distance_chunk_size = distance_chunk_size
        self.layout = CodeLayout(num_embeddings)
        fp32 = dict(dtype=torch.float32)
        self.register_buffer("frozen_codebook", torch.empty(num_embeddings, embedding_dim, **fp32))
        with torch.no_grad():
            self.frozen_codebook.copy_(frozen_random_codebook(num_embeddings, embedding_dim))
        self.codebook_transform = nn.Linear(embedding_dim, embedding_dim, bias=False, **fp32)
        self._register_usage()

    def initialize_state(self) -> None:
        super().initialize_state()
        init.copy_(self.frozen_codebook, frozen_random_codebook(self.num_embeddings, self.embedding_dim))

    def codebook_vectors(self) -> torch.Tensor:
        """The codes C W^T in fp32, (K, D), differentiable in W."""
        return F.linear(self.frozen_codebook.float(), self.codebook_transform.weight.float())

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize `latents` of shape (B, D, *spatial)."""
        self._check_latents(latents)
        with torch.autocast(device_type=latents.device.type, enabled=False):
            channels_first = latents.flatten(2).float()
            codebook = self.codebook_vectors()
            indices = nearest_codes_channels_first(channels_first.detach(), codebook.detach(), self.distance_chunk_size)
            quantized, commitment_loss, codebook_loss = _StraightThroughQuantize.apply(
                channels_first, codebook, indices, self.rotation_trick
            )
            code_counts = count_per_code(indices, self.num_embeddings)
            if self.training:
                code_counts = self._record_usage(code_counts, channels_first.detach())

        return QuantizerOutput(
            quantized=output_in_input_layout(quantized, latents),
            indices=indices.view(spatial_shape(latents)),
            loss=codebook_loss + self.commitment_cost * commitment_loss,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            perplexity=perplexity_of(code_counts),
            code_counts=code_counts,
        )

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The codes of `indices` (B, *spatial), returned as (B, D, *spatial)."""
        indices = self._checked_indices(indices)
        codes = codebook_rows(self.codebook_vectors(), flat_indices(indices))
        return codes.view(indices.shape[0], self.embedding_dim, *indices.shape[1:])

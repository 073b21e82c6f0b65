"""Residual vector quantization (Zeghidour et al. 2021, SoundStream, algorithm 1; Defossez et al. 2022, Encodec).

N `VectorQuantizer` stages, each quantizing what the stages before it left: r_1 = z, e_i = Q_i(r_i),
r_{i+1} = r_i - e_i; the output is sum_i e_i. The codes are (batch, N, *spatial), coarse to fine: the first k stages
alone decode at k/N of the bitrate, so one model serves every bitrate from log2(K) to N log2(K) bits per position
(`model.decode(codes[:, :k])`), as a neural codec does.

Quantizer dropout (SoundStream section 3.2) trains every bitrate at once: in training each example uses all N
stages or, with probability `quantizer_dropout`, the first n of them with n uniform in [1, N]; the codes of the stages
it skips are -1 in the output. Each stage is a full `VectorQuantizer` (EMA or loss rule, k-means initialisation on the
residuals it sees, dead-code restarts), fed only the examples that use it, so its state stays exact across processes:
the dropout draws are a function of a step counter and each example's place in the global batch (the processes'
batches in rank order), identical on every process and in one process fed the whole batch.

Gradients: each stage's commitment term (a mean over every latent of the batch, those that skip the stage counting
0) reaches z through its residual r_i = z - sg[sum_{j<i} e_j], as in vector-quantize-pytorch; the output passes the decoder's gradient to z once, straight through (or by the rotation
trick) from the sum of the codes, not once per stage. With `codebook_dim` the stages work in a lower-dimensional code
space, entered and left through one pair of learned linear maps.
"""

import torch
from torch import nn
from transformers import initialization as init

from .base import Quantizer, QuantizerOutput, channel_projections, flat_indices, perplexity_of, project_channels
from .code_layout import CodeLayout
from .distributed import all_reduce_sum, batch_size_slots, global_row_range, hashed_integers
from .vector_quantizer import VectorQuantizer, codebook_rows, onto_target


class ResidualVectorQuantizer(Quantizer):
    """Residual VQ over (B, D, *spatial) latents, codes (B, N, *spatial).

    Args:
        num_embeddings: K, the codebook size of every stage.
        embedding_dim: D, the input's channels.
        num_quantizers: N, the number of stages.
        quantizer_dropout: the probability that a training example uses only its first n stages, n uniform in
            [1, N] (0 disables quantizer dropout; SoundStream drops for every example).
        codebook_dim: the stages' code dimension, when lower than D (None: D).
        rotation_trick: pass the gradient from the summed codes to z by the rotation trick.
        commitment_cost, update_rule, decay, epsilon, kmeans_init, kmeans_iters, dead_code_threshold,
        distance_chunk_size: each stage's `VectorQuantizer` settings.

    Buffers: each stage's (``stages.<i>.*``) and ``dropout_step``, which seeds the dropout draws.
    """

    def __init__(
        self,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        num_quantizers: int = 4,
        quantizer_dropout: float = 0.0,
        codebook_dim: int | None = None,
        rotation_trick: bool = False,
        commitment_cost: float = 0.25,
        update_rule: str = "ema",
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        distance_chunk_size: int | None = None,
    ):
        super().__init__()
        if not isinstance(num_quantizers, int) or isinstance(num_quantizers, bool) or num_quantizers < 1:
            raise ValueError(f"num_quantizers must be an integer >= 1, got {num_quantizers!r}")
        if not isinstance(quantizer_dropout, (int, float)) or not 0 <= quantizer_dropout <= 1:
            raise ValueError(f"quantizer_dropout must be a probability in [0, 1], got {quantizer_dropout!r}")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.num_quantizers = num_quantizers
        self.quantizer_dropout = quantizer_dropout
        self.codebook_dim = codebook_dim or embedding_dim
        self.rotation_trick = rotation_trick
        self.commitment_cost = commitment_cost
        self.layout = CodeLayout(num_embeddings, num_quantizers)
        self.project_in, self.project_out = channel_projections(embedding_dim, self.codebook_dim)
        self.stages = nn.ModuleList(
            VectorQuantizer(
                num_embeddings, self.codebook_dim, commitment_cost, update_rule, decay, epsilon, kmeans_init,
                kmeans_iters, dead_code_threshold, distance_chunk_size,
            )
            for _ in range(num_quantizers)
        )
        self.register_buffer("dropout_step", torch.zeros((), dtype=torch.long))

    # ----------------------------------------------------------------------------------------------- usage

    @torch.no_grad()
    def reset_usage(self) -> None:
        for stage in self.stages:
            stage.reset_usage()

    @property
    def distinct_codes_used(self) -> int:
        return sum(stage.distinct_codes_used for stage in self.stages)

    @property
    def usage_histogram(self) -> torch.Tensor:
        return torch.stack([stage.usage_histogram for stage in self.stages])

    def initialize_state(self) -> None:
        init.zeros_(self.dropout_step)

    # ----------------------------------------------------------------------------------------------- quantize

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize `latents` of shape (B, D, *spatial); the codes are (B, N, *spatial)."""
        self._check_latents(latents)
        with torch.autocast(device_type=latents.device.type, enabled=False):
            code_space = project_channels(self.project_in, latents.flatten(2).float())
            stages_used = self._stages_per_example(code_space.shape[0], code_space.device)
            codes_sum = torch.zeros_like(code_space)
            indices = torch.full(
                (code_space.shape[0], self.num_quantizers, code_space.shape[2]), -1, dtype=torch.long, device=latents.device
            )
            commitment_loss = codebook_loss = code_space.new_zeros(())
            all_counts = []
            for number, stage in enumerate(self.stages):
                # Without dropout every example uses every stage: no masked copies.
                active = slice(None) if stages_used is None else stages_used > number
                residual = code_space[active] - codes_sum[active]
                quantized, stage_indices, stage_commitment, stage_codebook, counts = stage.quantize_code_space(residual, rotate=False)
                codes_sum[active] += quantized.detach()
                indices[active, number] = stage_indices
                # Means over every latent of the batch, a skipped one counting 0: a mean over the examples that used
                # the stage would weigh each process's examples by how many of them it drew, and DDP's average of
                # the processes' gradients would no longer be one process's gradient.
                share = residual.shape[0] / max(code_space.shape[0], 1)
                commitment_loss = commitment_loss + share * stage_commitment
                codebook_loss = codebook_loss + share * stage_codebook
                all_counts.append(counts)
            quantized = project_channels(self.project_out, onto_target(code_space, codes_sum, self.rotation_trick))
            code_counts = torch.stack(all_counts)
            coded = code_counts.sum(dim=1) > 0
            perplexity = (perplexity_of(code_counts) * coded).sum() / coded.sum().clamp(min=1)

        return QuantizerOutput(
            quantized=quantized.reshape(latents.shape).to(latents.dtype),
            indices=indices.view(latents.shape[0], self.num_quantizers, *latents.shape[2:]),
            loss=codebook_loss + self.commitment_cost * commitment_loss,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            perplexity=perplexity,
            code_counts=code_counts,
        )

    @torch.no_grad()
    def _stages_per_example(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """How many stages each example of this process uses in this training step, (batch,) in [1, N]; None when
        every example uses every stage (evaluation, or no dropout)."""
        if not self.training or self.quantizer_dropout == 0:
            return None
        (batch_sizes,) = all_reduce_sum(batch_size_slots(batch, device))
        total, first = global_row_range(batch_sizes)
        # Two draws per example of the global batch: whether it drops stages, and how many it keeps.
        draws = hashed_integers(self.dropout_step, 2 * batch, stream_length=2 * total, offset=2 * first).view(batch, 2)
        self.dropout_step += 1
        dropped = draws[:, 0].double() / 2**32 < self.quantizer_dropout
        return torch.where(dropped, 1 + draws[:, 1] % self.num_quantizers, self.num_quantizers)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The summed codes of `indices` (B, k, *spatial) with 1 <= k <= N (the first k stages: a lower bitrate for
        k < N), returned as (B, D, *spatial)."""
        indices = self._checked_indices(indices)
        if indices.ndim < 3 or not 1 <= indices.shape[1] <= self.num_quantizers:
            raise ValueError(
                f"residual codes must have shape (batch, stages, *spatial) with 1 <= stages <= {self.num_quantizers} "
                f"(num_quantizers), got {tuple(indices.shape)}"
            )
        batch, spatial = indices.shape[0], indices.shape[2:]
        codes = sum(
            codebook_rows(stage.codebook_vectors(), flat_indices(indices[:, number]))
            for number, stage in enumerate(self.stages[: indices.shape[1]])
        )
        return project_channels(self.project_out, codes).view(batch, self.embedding_dim, *spatial)

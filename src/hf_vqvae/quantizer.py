"""Vector quantization (van den Oord et al. 2017, section 3 and appendix A.1).

One module, `VectorQuantizer`, replaces each D-dimensional encoder output z_e by its nearest
codebook vector e_k and passes gradients straight through. Two codebook-update rules:

- ``"loss"``: the codebook term ||sg[z_e] - e||^2 trains the codebook by gradient descent.
- ``"ema"``: appendix A.1, exponential moving averages of assignment counts N and sums m,
  e = m / N with Laplace-smoothed N; the codebook gets no gradient.

Both keep the commitment term beta * ||z_e - sg[e]||^2 (beta on the *encoder* term, as in the
paper). Beyond the paper, and off or on by argument:

- k-means initialisation of the codebook from the first training batch;
- dead-code restarts: a code whose usage average falls below a threshold is re-seeded from a
  recent encoder output and its EMA state is reset with it;
- multi-process correctness: counts, sums, k-means data and restart candidates are reduced
  across processes, so every rank holds the same codebook as one process fed the union of the
  batches;
- all distance and update arithmetic in fp32, also under autocast or with bf16 weights.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput


UPDATE_RULES = ("loss", "ema")


@dataclass
class QuantizerOutput(ModelOutput):
    """
    Args:
        quantized: z_q with the straight-through gradient, same shape and dtype as the input.
        indices: nearest-code index per position, the input's shape without the channel axis.
        loss: the quantizer's share of the training loss, codebook_loss + beta * commitment_loss.
        commitment_loss: ||z_e - sg[e]||^2 (mean over elements), before multiplying by beta.
        codebook_loss: ||sg[z_e] - e||^2 (mean over elements); zero under the EMA rule.
        perplexity: exp(entropy) of the code distribution in this batch (all processes).
        code_counts: how often each code was chosen in this batch (all processes), shape (K,).
    """

    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None
    loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    code_counts: torch.FloatTensor | None = None


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if _world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _all_gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Concatenate equally sized (n, D) blocks from every process, in rank order."""
    if _world_size() == 1:
        return rows
    gathered = [torch.empty_like(rows) for _ in range(_world_size())]
    dist.all_gather(gathered, rows.contiguous())
    return torch.cat(gathered)


def _broadcast_from_first_rank(tensor: torch.Tensor) -> torch.Tensor:
    if _world_size() > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def _sample_rows(rows: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` rows drawn uniformly (with replacement when there are fewer rows than `count`)."""
    replacement = rows.shape[0] < count
    picks = torch.multinomial(
        torch.ones(rows.shape[0], device=rows.device), count, replacement=replacement, generator=generator
    )
    return rows[picks]


def nearest_codes(flat_latents: torch.Tensor, codebook: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Index of the nearest codebook row for every row of `flat_latents`, in fp32.

    argmin_j ||z - e_j||^2 = argmin_j (||e_j||^2 - 2 z.e_j): ||z||^2 is constant per row and is
    never computed. The (N x K) score matrix is built `chunk_size` rows at a time so memory stays
    bounded (chunk x K floats) and each chunk stays in cache for the argmin.
    """
    codebook = codebook.float()
    codebook_sq_norms = codebook.pow(2).sum(dim=1)
    indices = torch.empty(flat_latents.shape[0], dtype=torch.long, device=flat_latents.device)
    for start in range(0, flat_latents.shape[0], chunk_size):
        chunk = flat_latents[start : start + chunk_size].float()
        scores = torch.addmm(codebook_sq_norms, chunk, codebook.t(), beta=1.0, alpha=-2.0)
        indices[start : start + chunk_size] = scores.argmin(dim=1)
    return indices


def kmeans_plus_plus_seeds(samples: torch.Tensor, num_clusters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding: each next seed drawn with probability proportional to its squared
    distance from the seeds so far, so well-separated clusters each get a seed."""
    seeds = torch.empty(num_clusters, samples.shape[1], device=samples.device)
    seeds[0] = samples[torch.randint(samples.shape[0], (1,), generator=generator, device=samples.device)]
    closest = (samples - seeds[0]).pow(2).sum(dim=1)
    for index in range(1, num_clusters):
        weights = closest if closest.sum() > 0 else torch.ones_like(closest)
        seeds[index] = samples[torch.multinomial(weights, 1, generator=generator)]
        closest = torch.minimum(closest, (samples - seeds[index]).pow(2).sum(dim=1))
    return seeds


def kmeans(
    samples: torch.Tensor, num_clusters: int, num_iters: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means in fp32 from k-means++ seeds; returns (centroids (K, D), cluster sizes (K,)).

    A cluster that loses all its points keeps its previous centroid.
    """
    samples = samples.float()
    centroids = kmeans_plus_plus_seeds(samples, num_clusters, generator)
    counts = torch.bincount(nearest_codes(samples, centroids), minlength=num_clusters).float()
    for _ in range(num_iters):
        assignment = nearest_codes(samples, centroids)
        counts = torch.bincount(assignment, minlength=num_clusters).float()
        sums = torch.zeros_like(centroids).index_add_(0, assignment, samples)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, counts


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantizer with a straight-through gradient.

    Args:
        num_embeddings: codebook size K.
        embedding_dim: code dimension D; the input's channel axis (axis 1) must have this size.
        commitment_cost: beta, the weight of the commitment term ||z_e - sg[e]||^2 (paper: 0.25).
        update_rule: ``"ema"`` (appendix A.1) or ``"loss"`` (codebook term of eq. 3).
        decay: gamma of the EMA updates (paper: 0.99); also the decay of the usage average that
            decides which codes are dead, under both rules.
        epsilon: Laplace smoothing of the EMA cluster sizes, so an unused code never divides by 0.
        kmeans_init: initialise the codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations for that initialisation.
        dead_code_threshold: a code whose usage average (assignments per batch, EMA) falls below
            this is re-seeded from a recent encoder output during training; 0 disables restarts.
        distance_chunk_size: rows of the (N x K) distance matrix computed at a time.

    Buffers (persistent, so a checkpoint resumes exactly): ``cluster_size`` (usage average N,
    the EMA counts of eq. 6), ``embed_sum`` (m of eq. 7, used by the EMA rule), ``initialized``
    (whether k-means already ran), ``restart_step`` (seeds restart draws identically on every
    rank) and ``codes_used`` (assignments per code since the last `reset_usage`).
    """

    def __init__(
        self,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        commitment_cost: float = 0.25,
        update_rule: str = "ema",
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        distance_chunk_size: int = 4096,
    ):
        super().__init__()
        if update_rule not in UPDATE_RULES:
            raise ValueError(f"update_rule must be one of {UPDATE_RULES}, got {update_rule!r}")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.commitment_cost = commitment_cost
        self.update_rule = update_rule
        self.decay = decay
        self.epsilon = epsilon
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.distance_chunk_size = distance_chunk_size

        self.embedding = nn.Parameter(torch.empty(num_embeddings, embedding_dim), requires_grad=update_rule == "loss")
        self.register_buffer("cluster_size", torch.ones(num_embeddings))
        self.register_buffer("embed_sum", torch.empty(num_embeddings, embedding_dim))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("restart_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("codes_used", torch.zeros(num_embeddings))
        self.reset_codebook()

    @torch.no_grad()
    def reset_codebook(self) -> None:
        """Random codebook, uniform in +-1/K, with EMA state that keeps each code where it is
        until it is used (N = 1, m = e)."""
        bound = 1.0 / self.num_embeddings
        self.embedding.uniform_(-bound, bound)
        self.cluster_size.fill_(1.0)
        self.embed_sum.copy_(self.embedding)

    @torch.no_grad()
    def reset_usage(self) -> None:
        """Start a new window (an epoch, say) for `codes_used` / `distinct_codes_used`."""
        self.codes_used.zero_()

    @property
    def distinct_codes_used(self) -> int:
        """Number of codes chosen at least once in training since the last `reset_usage`."""
        return int((self.codes_used > 0).sum())

    @property
    def usage_histogram(self) -> torch.Tensor:
        """Assignments per code since the last `reset_usage` (all processes), shape (K,)."""
        return self.codes_used.clone()

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize `latents` of shape (B, D, *spatial), e.g. (B, D, H, W) or (B, D, L)."""
        if latents.ndim < 3 or latents.shape[1] != self.embedding_dim:
            raise ValueError(
                f"VectorQuantizer expects latents of shape (batch, {self.embedding_dim}, *spatial) "
                f"with at least one spatial axis, got {tuple(latents.shape)}"
            )
        input_dtype = latents.dtype
        channels_last = latents.movedim(1, -1)
        spatial_shape = channels_last.shape[:-1]
        # Autocast would run the distance matmul in half precision, where near-ties flip and
        # ||e||^2 overflows; all quantizer arithmetic is fp32 whatever the weights and context.
        with torch.autocast(device_type=latents.device.type, enabled=False):
            flat = channels_last.reshape(-1, self.embedding_dim).float()
            if self.training and not bool(self.initialized):
                self._kmeans_initialize(flat)
            codebook = self.embedding.float()
            indices = nearest_codes(flat.detach(), codebook, self.distance_chunk_size)
            quantized = F.embedding(indices, codebook)
            code_counts = torch.bincount(indices, minlength=self.num_embeddings).float()
            if self.training:
                self._update_statistics(flat.detach(), indices, code_counts)

            commitment_loss = F.mse_loss(flat, quantized.detach())
            if self.update_rule == "loss":
                codebook_loss = F.mse_loss(quantized, flat.detach())
            else:
                codebook_loss = torch.zeros((), device=flat.device)
            loss = codebook_loss + self.commitment_cost * commitment_loss

            probabilities = code_counts / code_counts.sum().clamp(min=1)
            perplexity = torch.exp(-torch.sum(probabilities * torch.log(probabilities.clamp(min=1e-10))))

            # Straight-through estimator: the forward value is z_q, the gradient flows to z_e.
            quantized = flat + (quantized - flat).detach()

        quantized = quantized.reshape(*spatial_shape, self.embedding_dim).movedim(-1, 1).to(input_dtype)
        return QuantizerOutput(
            quantized=quantized,
            indices=indices.reshape(spatial_shape),
            loss=loss,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            perplexity=perplexity,
            code_counts=code_counts,
        )

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for `indices` of shape (B, *spatial), returned as (B, D, *spatial)."""
        if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.is_complex():
            raise ValueError(f"code indices must be an integer tensor, got dtype {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_embeddings):
            raise ValueError(
                f"code indices must lie in [0, {self.num_embeddings}), got values in "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        return F.embedding(indices.long(), self.embedding).movedim(-1, 1)

    @torch.no_grad()
    def _update_statistics(self, flat: torch.Tensor, indices: torch.Tensor, code_counts: torch.Tensor) -> None:
        """One training step's bookkeeping: usage, the EMA codebook update, restarts.

        `code_counts` is summed over all processes in place, so the caller's metrics see the
        global batch.
        """
        _all_reduce_sum(code_counts)
        self.codes_used += code_counts
        if self.update_rule == "ema":
            self._ema_update(flat, indices, code_counts)
        else:
            self.cluster_size.mul_(self.decay).add_(code_counts, alpha=1 - self.decay)
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(flat)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor, code_counts: torch.Tensor) -> None:
        """Equations 6-8 of appendix A.1 on statistics summed over all processes."""
        batch_sums = torch.zeros_like(self.embed_sum, dtype=torch.float32).index_add_(0, indices, flat)
        batch_sums = _all_reduce_sum(batch_sums)
        decay = self.decay
        cluster_size = self.cluster_size.float().mul_(decay).add_(code_counts, alpha=1 - decay)
        embed_sum = self.embed_sum.float().mul_(decay).add_(batch_sums, alpha=1 - decay)
        total = cluster_size.sum()
        smoothed = (cluster_size + self.epsilon) / (total + self.num_embeddings * self.epsilon) * total
        self.cluster_size.copy_(cluster_size)
        self.embed_sum.copy_(embed_sum)
        self.embedding.copy_(embed_sum / smoothed.unsqueeze(1))

    @torch.no_grad()
    def _kmeans_initialize(self, flat: torch.Tensor) -> None:
        """k-means on encoder outputs pooled from every process; rank 0's result is shared."""
        samples_per_process = min(max(self.num_embeddings * 16, 4096), 65536)
        pooled = _all_gather_rows(_sample_rows(flat.detach(), samples_per_process))
        centroids, counts = kmeans(pooled, self.num_embeddings, self.kmeans_iters)
        centroids = _broadcast_from_first_rank(centroids.contiguous())
        counts = _broadcast_from_first_rank(counts.contiguous())
        # Usage starts at the share of the batch each centroid would draw, so a centroid that
        # drew nothing is dead right away and gets restarted.
        batch_size = flat.shape[0] * _world_size()
        self.cluster_size.copy_(counts / pooled.shape[0] * batch_size)
        self.embedding.copy_(centroids)
        self.embed_sum.copy_(centroids * self.cluster_size.unsqueeze(1))
        self.initialized.fill_(True)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        """Re-seed codes whose usage average fell below the threshold, with fresh EMA state.

        Usage averages are identical on every rank, so every rank sees the same dead codes;
        candidates are drawn from every process's batch and gathered, then picked with a
        generator seeded by the shared step counter, so every rank makes the same choice.
        """
        dead = self.cluster_size < self.dead_code_threshold
        self.restart_step += 1
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        candidates = _all_gather_rows(_sample_rows(flat, num_dead))
        generator = torch.Generator(device=flat.device).manual_seed(int(self.restart_step))
        chosen = _sample_rows(candidates, num_dead, generator)
        self.embedding[dead] = chosen.to(self.embedding.dtype)
        self.cluster_size[dead] = 1.0
        self.embed_sum[dead] = chosen.to(self.embed_sum.dtype)

"""Vector quantization (van den Oord et al. 2017, section 3 and appendix A.1), with the options later work added.

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
  across processes, so every rank holds the same codebook, and it is the codebook one process
  fed the concatenated batches would hold (up to the order of floating-point sums);
- all distance and update arithmetic in fp32, also under autocast or with bf16 weights;
- the rotation trick (Fifty et al. 2024): the gradient reaches z_e through the rotation and scaling that take z_e
  onto e_k, instead of unchanged (straight through);
- cosine-similarity codes (ViT-VQGAN, Yu et al. 2022): latents and codes l2-normalised, so the nearest code is the
  one at the smallest angle;
- factorised codes (ViT-VQGAN): a linear map takes z_e to a low-dimensional code space (`codebook_dim`) where the
  lookup happens, another maps the code back to D.

Speed: the latents stay in their (B, D, *spatial) layout throughout (no transposed copies),
the (N x K) distances exist one cache-sized chunk at a time, the argmin over K is split in
two cheap passes, and on an accelerator a training step never waits for the device (after the
first one, which checks whether k-means has run).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

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
from .distributed import (
    all_reduce_sum,
    batch_size_slots,
    broadcast_from_first_rank,
    global_row_range,
    hashed_integers,
    take_global_rows,
)


UPDATE_RULES = ("loss", "ema")

# Distances are computed this many (row x code) scores at a time. On a CPU, per thread: the chunk
# stays in cache between the matmul that writes it and the argmin that reads it, and each thread
# gets enough rows for the small argmin passes to run in parallel (4 MiB per thread measured
# fastest for K = 512, D = 64). On an accelerator large chunks keep the kernel count low while
# bounding memory.
CPU_CHUNK_SCORES_PER_THREAD = 2**20
ACCELERATOR_CHUNK_SCORES = 2**24

# The two-pass argmin splits the codes into this many groups; its first pass reduces a
# (rows, K / 32, 32) view over the middle axis, 32 contiguous scores at a time (vectorised).
ARGMIN_GROUPS = 32

# Per-code sums of the latents are accumulated this many rows at a time.
SUM_BLOCK_ROWS = 4096

# k-means initialisation clusters at most this many pooled encoder outputs (16 per code).
KMEANS_SAMPLES_PER_CODE = 16
KMEANS_MIN_SAMPLES = 4096
KMEANS_MAX_SAMPLES = 65536


def _argmin_codes(scores: torch.Tensor) -> torch.Tensor:
    """`scores.argmin(-1)` for (rows, K) scores whose columns hold the codes in grouped order.

    PyTorch's argmin is a scalar loop while amin is vectorised, so the search runs in two passes:
    the minimum of each group (amin over a strided axis), the first group holding the overall
    minimum, then the argmin inside that group only. `_grouped_code_order` lays the codebook out
    so that group g (of P) holds codes g*G .. g*G+G-1 at columns g, g+P, g+2P, ...: groups and
    the codes inside each are in code order, so this finds the first minimum exactly as argmin
    does, ties included.
    """
    rows, num_codes = scores.shape
    group_size = num_codes // ARGMIN_GROUPS
    group = scores.view(rows, group_size, ARGMIN_GROUPS).amin(dim=1).argmin(dim=1)
    positions = group[:, None] + ARGMIN_GROUPS * torch.arange(group_size, device=scores.device)
    return group * group_size + scores.gather(1, positions).argmin(dim=1)


def _uses_grouped_argmin(num_codes: int) -> bool:
    return num_codes % ARGMIN_GROUPS == 0 and num_codes >= 2 * ARGMIN_GROUPS


def _grouped_code_order(codebook: torch.Tensor) -> torch.Tensor:
    """Codebook rows reordered for `_argmin_codes`: column i*P + g holds code g*G + i."""
    num_codes, dim = codebook.shape
    group_size = num_codes // ARGMIN_GROUPS
    return codebook.view(ARGMIN_GROUPS, group_size, dim).transpose(0, 1).reshape(num_codes, dim)


def _default_chunk_rows(num_codes: int, device: torch.device) -> int:
    budget = CPU_CHUNK_SCORES_PER_THREAD * torch.get_num_threads() if device.type == "cpu" else ACCELERATOR_CHUNK_SCORES
    return max(1, budget // num_codes)


@torch.no_grad()
def nearest_codes_channels_first(latents: torch.Tensor, codebook: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Nearest-code index for every position of `latents` (B, D, L), as (B, L), in fp32.

    argmin_j ||z - e_j||^2 = argmin_j (||e_j||^2 - 2 z.e_j): ||z||^2 is constant per row and is
    never computed. The scores are built `chunk_size` rows at a time (whole batch elements, or
    slices of one): the matmul reads the channels-first block through a transposed view, so
    the latents are never copied, and each chunk stays in cache for the argmin.
    """
    batch, _, length = latents.shape
    num_codes = codebook.shape[0]
    latents = latents.float()
    codebook = codebook.float()
    grouped = _uses_grouped_argmin(num_codes)
    if grouped:
        codebook = _grouped_code_order(codebook)
    codebook_sq_norms = codebook.pow(2).sum(dim=1)
    chunk_rows = chunk_size or _default_chunk_rows(num_codes, latents.device)
    positions_per_chunk = max(1, min(length, chunk_rows))
    elements_per_chunk = max(1, chunk_rows // max(length, 1))
    indices = torch.empty(batch, length, dtype=torch.long, device=latents.device)
    # One buffer for every chunk's scores: a fresh allocation per chunk costs page faults.
    buffer = latents.new_empty(min(batch, elements_per_chunk) * positions_per_chunk * num_codes)
    for first in range(0, batch, elements_per_chunk):
        for start in range(0, length, positions_per_chunk):
            block = latents[first : first + elements_per_chunk, :, start : start + positions_per_chunk]
            scores = buffer[: block.shape[0] * block.shape[2] * num_codes].view(block.shape[0], block.shape[2], num_codes)
            torch.baddbmm(codebook_sq_norms, block.transpose(1, 2), codebook.t().expand(block.shape[0], -1, -1), alpha=-2.0, out=scores)
            scores = scores.view(-1, num_codes)
            found = _argmin_codes(scores) if grouped else scores.argmin(dim=1)
            indices[first : first + elements_per_chunk, start : start + positions_per_chunk] = found.view(block.shape[0], -1)
    return indices


def nearest_codes(flat_latents: torch.Tensor, codebook: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Index of the nearest codebook row for every row of `flat_latents` (N, D), in fp32."""
    return nearest_codes_channels_first(flat_latents.t().unsqueeze(0), codebook, chunk_size).squeeze(0)


def codebook_rows(codebook: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Codebook rows for `indices` (B, L), laid out channels-first as (B, D, L) and contiguous,
    the layout of the latents, so no transposed copy follows."""
    batch, length = indices.shape
    dim = codebook.shape[1]
    return torch.gather(codebook.t().expand(batch, dim, -1), 2, indices.unsqueeze(1).expand(batch, dim, length))


def _sum_per_code(latents: torch.Tensor, indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Sum of the latents (B, D, L) assigned to each code, (K, D), without a one-hot matrix.

    index_add_ along the code axis of a (D, K) sum reads the channels-first latents as they
    are; a block of several batch elements (when L is short) is first laid out as (D, rows),
    a copy small enough to stay in cache.
    """
    batch, dim, length = latents.shape
    sums = latents.new_zeros(dim, num_codes)
    elements_per_block = max(1, SUM_BLOCK_ROWS // max(length, 1))
    for first in range(0, batch, elements_per_block):
        block = latents[first : first + elements_per_block]
        sums.index_add_(1, indices[first : first + elements_per_block].reshape(-1), block.transpose(0, 1).reshape(dim, -1))
    return sums.t()


def sampled_seeds(samples: torch.Tensor, num_clusters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means seeds drawn uniformly from the samples (distinct rows where there are enough), so dense regions get
    seeds in proportion to their share of the data. k-means++ seeding, which favours far-off samples, spent seeds on
    outliers: codes that drew few latents and died (the first batch's perplexity 284 against 370 for K = 512 in
    benchmarks/quantizer_family.py)."""
    count = samples.shape[0]
    if count >= num_clusters:
        picks = torch.randperm(count, generator=generator, device=samples.device)[:num_clusters]
    else:
        picks = torch.randint(count, (num_clusters,), generator=generator, device=samples.device)
    return samples[picks]


def kmeans(
    samples: torch.Tensor, num_clusters: int, num_iters: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means in fp32 from seeds sampled from the data; returns (centroids (K, D), cluster sizes (K,)).

    A cluster that loses all its points keeps its previous centroid.
    """
    samples = samples.float()
    centroids = sampled_seeds(samples, num_clusters, generator)
    counts = count_per_code(nearest_codes(samples, centroids), num_clusters)
    for _ in range(num_iters):
        assignment = nearest_codes(samples, centroids)
        counts = count_per_code(assignment, num_clusters)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, samples)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, counts


# Below this norm a vector has no direction: the rotation trick divides by norms clamped here (as
# vector-quantize-pytorch does), and cosine-similarity codes are normalised with it.
NORM_EPSILON = 1e-6


def l2_normalized(vectors: torch.Tensor, dim: int) -> torch.Tensor:
    return F.normalize(vectors, dim=dim, eps=NORM_EPSILON)


def rotated_gradient(grad: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The gradient the rotation trick (Fifty et al. 2024, section 4.2) passes to `source` for the gradient `grad` of
    `target`, vectors along axis 1.

    The forward value is `target` = lambda R source, R the rotation taking source's direction u onto target's
    direction q (in their common plane) and lambda = ||target|| / ||source||, both treated as constants. With
    R = I - 2 w w^T + 2 q u^T, w = (u + q) / ||u + q||, the gradient is lambda R^T grad =
    lambda (grad - 2 w (w . grad) + 2 u (q . grad)).
    """
    source_norm = torch.linalg.vector_norm(source, dim=1, keepdim=True).clamp(min=NORM_EPSILON)
    target_norm = torch.linalg.vector_norm(target, dim=1, keepdim=True)
    source_direction = source / source_norm
    target_direction = target / target_norm.clamp(min=NORM_EPSILON)
    bisector = l2_normalized(source_direction + target_direction, dim=1)
    rotated = (
        grad
        - 2 * bisector * (bisector * grad).sum(dim=1, keepdim=True)
        + 2 * source_direction * (target_direction * grad).sum(dim=1, keepdim=True)
    )
    return rotated * (target_norm / source_norm)


class _OntoTarget(torch.autograd.Function):
    """`target` in the forward pass; the gradient goes to `source` unchanged or, with `rotate`, by the rotation trick."""

    @staticmethod
    def forward(ctx, source, target, rotate: bool):
        ctx.rotate = rotate
        if rotate:
            ctx.save_for_backward(source, target)
        return target.clone()

    @staticmethod
    def backward(ctx, grad):
        if not ctx.rotate:
            return grad, None, None
        source, target = ctx.saved_tensors
        return rotated_gradient(grad, source, target), None, None


def onto_target(source: torch.Tensor, target: torch.Tensor, rotate: bool) -> torch.Tensor:
    """Exactly the (detached) `target`, with the gradient passed to `source` straight through or, with `rotate`, by
    the rotation trick: what residual VQ does with the sum of its stages' codes."""
    return _OntoTarget.apply(source, target.detach(), rotate)


class _StraightThroughQuantize(torch.autograd.Function):
    """z_q = e_k in the forward pass, with the gradients of eq. 3 in one fused backward pass.

    Returns (z_q, commitment distance, codebook distance): both distances are
    mean ||z_e - e_k||^2, but the first differentiates only into z_e (sg[e]) and the second
    only into the codebook (sg[z_e]). z_q's gradient flows to z_e unchanged (straight-through), or with `rotate` by
    the rotation trick (`rotated_gradient`). Written as one Function because the autograd graph of
    z_e + sg[z_q - z_e] plus two MSE terms makes several passes over the latents and their temporaries; here the
    error z_e - z_q is formed once, in the forward pass, and the backward pass writes the latents'
    gradient in one pass from it. z_q is exactly the codebook rows.
    """

    @staticmethod
    def forward(ctx, latents, codebook, indices, rotate: bool = False):
        quantized = codebook_rows(codebook, indices)
        error = latents - quantized
        # An empty batch (a process whose examples all skipped a residual stage) has distance 0, not 0 / 0.
        distance = torch.linalg.vector_norm(error).square() / max(error.numel(), 1)
        # Not the codebook itself: a training step updates it in place before backward runs.
        ctx.save_for_backward(error, indices, latents if rotate else None)
        ctx.num_codes = codebook.shape[0]
        ctx.rotate = rotate
        ctx.set_materialize_grads(False)
        return quantized, distance, distance.clone()

    @staticmethod
    def backward(ctx, grad_quantized, grad_commitment, grad_codebook):
        error, indices, latents = ctx.saved_tensors
        scale = 2.0 / max(error.numel(), 1)
        grad_codebook_rows = None
        if grad_codebook is not None and ctx.needs_input_grad[1]:
            # d/de_k of the sum over z assigned to k of ||z - e_k||^2 is -2 sum (z - e_k).
            grad_codebook_rows = _sum_per_code(error, indices, ctx.num_codes) * (-scale * grad_codebook)
        grad_latents = grad_quantized
        if grad_quantized is not None and ctx.rotate:
            grad_latents = rotated_gradient(grad_quantized, latents, latents - error)
        if grad_commitment is not None and ctx.needs_input_grad[0]:
            weight = scale * grad_commitment
            grad_latents = error * weight if grad_latents is None else torch.addcmul(grad_latents, error, weight)
        return grad_latents, grad_codebook_rows, None, None


def paper_settings(config) -> dict:
    """The `VectorQuantizer` arguments of the paper's quantizer a config carries (also every residual stage's)."""
    names = ("commitment_cost", "update_rule", "decay", "epsilon", "kmeans_init", "kmeans_iters", "dead_code_threshold")
    return {name: getattr(config, name) for name in names}


class VectorQuantizer(Quantizer):
    """Nearest-neighbour vector quantizer with a straight-through gradient.

    Args:
        num_embeddings: codebook size K.
        embedding_dim: code dimension D; the input's channel axis (axis 1) must have this size.
        commitment_cost: beta, the weight of the commitment term ||z_e - sg[e]||^2 (paper: 0.25).
        update_rule: ``"ema"`` (appendix A.1) or ``"loss"`` (codebook term of eq. 3).
        decay: gamma of the EMA updates (paper: 0.99); also the decay of the usage average that
            decides which codes are dead, under both rules.
        epsilon: Laplace smoothing of the EMA cluster sizes, so an unused code never divides by 0.
        kmeans_init: initialise the codebook by k-means on the first training batch (pooled from
            every process), the centroids weighing in the EMA state as one batch does; without it the EMA state
            is seeded from the random codebook at that batch.
        kmeans_iters: Lloyd iterations for that initialisation.
        dead_code_threshold: restarts, as a fraction of the mean usage (the mean of the codes' usage
            averages: latents per training batch over all processes / K once the averages have settled): a
            code whose usage average (assignments per batch, EMA) falls below
            `dead_code_threshold x mean usage` is re-seeded from a recent encoder
            output, with fresh EMA state (usage = that bound, sum = bound x the new code); 0
            disables restarts. Relative to the mean, the same value balances usage at any batch
            size and grid (0.5 reaches perplexity ~0.85 K in benchmarks/codebook_usage.py).
        distance_chunk_size: rows of the (N x K) distance matrix computed at a time; by default
            2**20 scores per thread on a CPU (cache-sized) and 2**24 on an accelerator.
        rotation_trick: pass the gradient to z_e by the rotation trick instead of straight through.
        cosine_similarity: l2-normalise the latents (after the projection, if any) and the codes: the loss terms
            and the quantized output live on the unit sphere, and the EMA averages unit vectors.
        codebook_dim: the dimension of the codes, when lower than D (factorised codes): z_e is mapped to it by a
            learned linear layer (`project_in`) before the lookup and the code back to D by another (`project_out`).
            None (or D) looks up D-dimensional codes directly.

    Buffers (persistent, so a checkpoint resumes exactly): ``cluster_size`` (usage average N,
    the EMA counts of eq. 6), ``embed_sum`` (m of eq. 7, used by the EMA rule), ``initialized``
    (whether the EMA state is seeded: by k-means, or from the codebook), ``restart_step`` (seeds
    restart draws identically on every rank) and ``codes_used`` (assignments per code since the
    last `reset_usage`). A fresh quantizer's buffers are constants (N = 1, m = 0, not seeded), as
    transformers expects of buffers (`_init_weights` rebuilds them on a model made on the meta
    device): the first training batch seeds m from the random codebook (m = N e), or runs k-means.

    In training mode every process must call forward together: the statistics are reduced
    across processes. Evaluation mode changes no state and communicates nothing.
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
        distance_chunk_size: int | None = None,
        rotation_trick: bool = False,
        cosine_similarity: bool = False,
        codebook_dim: int | None = None,
    ):
        super().__init__()
        if update_rule not in UPDATE_RULES:
            raise ValueError(f"update_rule must be one of {UPDATE_RULES}, got {update_rule!r}")
        if codebook_dim is not None and (not isinstance(codebook_dim, int) or isinstance(codebook_dim, bool) or codebook_dim < 1):
            raise ValueError(f"codebook_dim must be None or an integer >= 1, got {codebook_dim!r}")
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
        self.rotation_trick = rotation_trick
        self.cosine_similarity = cosine_similarity
        self.codebook_dim = codebook_dim or embedding_dim
        self.layout = CodeLayout(num_embeddings)

        # Explicit dtypes: a model built under another default dtype (`_from_config(config, dtype=torch.bfloat16)`)
        # still gets an fp32 codebook and EMA state, a bool flag and an integer step.
        fp32 = dict(dtype=torch.float32)
        self.project_in, self.project_out = channel_projections(embedding_dim, self.codebook_dim)
        self.embedding = nn.Parameter(torch.empty(num_embeddings, self.codebook_dim, **fp32), requires_grad=update_rule == "loss")
        self.register_buffer("cluster_size", torch.ones(num_embeddings, **fp32))
        self.register_buffer("embed_sum", torch.zeros(num_embeddings, self.codebook_dim, **fp32))
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("restart_step", torch.zeros((), dtype=torch.long))
        self._register_usage()
        # Reading `initialized` would stall an accelerator every step; once seen true it stays
        # true until new state is loaded.
        self._known_initialized = False
        self.register_load_state_dict_post_hook(VectorQuantizer._forget_initialized)
        with torch.no_grad():
            self.embedding.uniform_(-1.0 / num_embeddings, 1.0 / num_embeddings)

    @classmethod
    def from_config(cls, config) -> "VectorQuantizer":
        """The quantizer a model's config describes (its `configuration_utils.QUANTIZER_FIELDS`)."""
        return cls(
            num_embeddings=config.num_embeddings,
            embedding_dim=config.embedding_dim,
            **paper_settings(config),
            rotation_trick=getattr(config, "rotation_trick", False),
            cosine_similarity=getattr(config, "cosine_similarity", False),
            codebook_dim=getattr(config, "codebook_dim", None),
        )

    @staticmethod
    def _forget_initialized(module: "VectorQuantizer", incompatible_keys) -> None:
        module._known_initialized = False

    def initialize_state(self) -> None:
        """A fresh quantizer's state, written through transformers' initialization helpers, which leave tensors
        loaded from a checkpoint alone: what a model's `_init_weights` does for its quantizer. The codebook is
        uniform in +-1/K; every buffer is a constant (the first training batch seeds the EMA state)."""
        super().initialize_state()
        bound = 1.0 / self.num_embeddings
        init.uniform_(self.embedding, -bound, bound)
        init.ones_(self.cluster_size)
        init.zeros_(self.embed_sum)
        init.constant_(self.initialized, False)
        init.zeros_(self.restart_step)

    @torch.no_grad()
    def reset_codebook(self) -> None:
        """Random codebook, uniform in +-1/K, with EMA state that keeps each code where it is
        until it is used (N = 1, m = e)."""
        bound = 1.0 / self.num_embeddings
        self.embedding.uniform_(-bound, bound)
        self._seed_ema_state()

    @torch.no_grad()
    def _seed_ema_state(self) -> None:
        """EMA state that keeps each code where it is until it is used (m = N e: the EMA's codebook is the codebook),
        marked seeded. Every rank holds the same codebook (DDP broadcasts it), so every rank seeds alike."""
        self.embed_sum.copy_(self.embedding * self.cluster_size.unsqueeze(1))
        self.initialized.fill_(True)

    def codebook_vectors(self) -> torch.Tensor:
        """The codes in fp32, (K, codebook_dim), l2-normalised for cosine-similarity codes."""
        codebook = self.embedding.float()
        # A copy before normalising: the training step updates `embedding` in place before backward reads
        # what the normalisation saved.
        return l2_normalized(codebook.clone(), dim=1) if self.cosine_similarity else codebook

    def to_code_space(self, latents: torch.Tensor) -> torch.Tensor:
        """fp32 (B, D, L) latents -> the space of the codes: projected to codebook_dim, l2-normalised if asked."""
        latents = project_channels(self.project_in, latents)
        return l2_normalized(latents, dim=1) if self.cosine_similarity else latents

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize `latents` of shape (B, D, *spatial), e.g. (B, D, H, W) or (B, D, L)."""
        self._check_latents(latents)
        # Autocast would run the distance matmul in half precision, where near-ties flip and
        # ||e||^2 overflows; all quantizer arithmetic is fp32 whatever the weights and context.
        with torch.autocast(device_type=latents.device.type, enabled=False):
            code_space = self.to_code_space(latents.flatten(2).float())
            quantized, indices, commitment_loss, codebook_loss, code_counts = self.quantize_code_space(
                code_space, rotate=self.rotation_trick
            )
            loss = codebook_loss + self.commitment_cost * commitment_loss
            quantized = project_channels(self.project_out, quantized)

        return QuantizerOutput(
            quantized=output_in_input_layout(quantized, latents),
            indices=indices.view(spatial_shape(latents)),
            loss=loss,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
            perplexity=perplexity_of(code_counts),
            code_counts=code_counts,
        )

    def quantize_code_space(self, latents: torch.Tensor, rotate: bool) -> tuple[torch.Tensor, ...]:
        """The lookup, its losses and a training step's bookkeeping for fp32 latents (B, codebook_dim, L) already in
        the code space: (quantized (B, codebook_dim, L), indices (B, L), commitment distance, codebook distance
        (zero under the EMA rule), code counts (K,) of every process in training). Residual VQ calls it per stage."""
        if self.training and not self._known_initialized:
            if not bool(self.initialized):
                if self.kmeans_init:
                    self._kmeans_initialize(latents.detach())
                else:
                    self._seed_ema_state()
            self._known_initialized = bool(self.initialized)
        codebook = self.codebook_vectors()
        indices = nearest_codes_channels_first(latents.detach(), codebook, self.distance_chunk_size)
        quantized, commitment_loss, codebook_loss = _StraightThroughQuantize.apply(latents, codebook, indices, rotate)
        if self.update_rule != "loss":
            codebook_loss = torch.zeros_like(commitment_loss)
        code_counts = count_per_code(indices, self.num_embeddings)
        if self.training:
            code_counts = self._update_statistics(latents.detach(), indices, code_counts)
        return quantized, indices, commitment_loss, codebook_loss, code_counts

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for `indices` of shape (B, *spatial), returned as (B, D, *spatial)."""
        indices = self._checked_indices(indices)
        codes = codebook_rows(self.codebook_vectors(), flat_indices(indices))
        return project_channels(self.project_out, codes).view(indices.shape[0], self.embedding_dim, *indices.shape[1:])

    @torch.no_grad()
    def _update_statistics(self, latents: torch.Tensor, indices: torch.Tensor, code_counts: torch.Tensor) -> torch.Tensor:
        """One training step's bookkeeping: usage, the EMA codebook update, restarts.

        All processes' statistics go through one all-reduce; returns the global code counts.
        """
        ema = self.update_rule == "ema"
        restarts = self.dead_code_threshold > 0
        batch_sums = _sum_per_code(latents, indices, self.num_embeddings) if ema else latents.new_zeros(0)
        batch_sizes = batch_size_slots(indices.numel(), latents.device)
        non_finite = (~torch.isfinite(latents)).sum(dtype=torch.float32).reshape(1)
        code_counts, batch_sums, batch_sizes, non_finite = all_reduce_sum(code_counts, batch_sums, batch_sizes, non_finite)
        # A non-finite latent on any process (the count is all-reduced, so every rank decides alike) would stay
        # in the moving averages for good: such a batch leaves usage, EMA state and codebook as they were.
        # Selected on the device, so an accelerator never waits for the check.
        finite = non_finite[0] == 0
        self.codes_used += torch.where(finite, code_counts, 0.0)

        # Eqs. 6-7: N <- gamma N + (1 - gamma) n, m <- gamma m + (1 - gamma) sum z, as one lerp each.
        cluster_size = self.cluster_size.float()
        cluster_size = torch.where(finite, torch.lerp(cluster_size, code_counts, 1 - self.decay), cluster_size)
        embed_sum = self.embed_sum.float()
        codebook = self.embedding.float()
        if ema:
            embed_sum = torch.where(finite, torch.lerp(embed_sum, batch_sums, 1 - self.decay), embed_sum)
            total = cluster_size.sum()
            smoothed = (cluster_size + self.epsilon) / (total + self.num_embeddings * self.epsilon) * total
            codebook = torch.where(finite, embed_sum / smoothed.unsqueeze(1), codebook)
        if restarts:
            # Relative to the mean of the usage averages, not to this batch's mean usage: the two agree once the
            # averages have settled, and while they still carry the k-means state's small weight (see
            # `_kmeans_initialize`) only this one is on their scale.
            usage_bound = self.dead_code_threshold * cluster_size.mean()
            dead = (cluster_size < usage_bound) & finite
            self.restart_step += 1
            # On a CPU looking costs nothing, so the draw is skipped when no code died (the mask
            # is the same on every rank, so all skip the collective together); on an accelerator
            # the look would wait for the device, so the draw always runs.
            if latents.device.type != "cpu" or dead.any():
                candidates = self._restart_candidates(latents, *global_row_range(batch_sizes))
                # A restarted code's usage starts at the bound: it stays if the next batches give
                # it its share, and is judged again after one batch that does not (a fixed 1
                # would sit below any bound above 1 and mark it dead forever).
                cluster_size = torch.where(dead, usage_bound, cluster_size)
                embed_sum = torch.where(dead.unsqueeze(1), candidates * usage_bound, embed_sum)
                codebook = torch.where(dead.unsqueeze(1), candidates, codebook)
        self.cluster_size.copy_(cluster_size)
        if ema or restarts:
            self.embed_sum.copy_(embed_sum)
            self.embedding.copy_(codebook)
        return code_counts

    @torch.no_grad()
    def _restart_candidates(self, latents: torch.Tensor, total_rows: torch.Tensor, first_row: torch.Tensor) -> torch.Tensor:
        """One encoder output of the global batch per code, (K, D), drawn uniformly; a dead code
        takes its candidate. The draw is a function of `restart_step` only, so every process
        and a single process fed the concatenated batches pick the same rows."""
        draws = hashed_integers(self.restart_step, self.num_embeddings) % total_rows.clamp(min=1)
        return take_global_rows(latents, draws, first_row)

    @torch.no_grad()
    def _kmeans_initialize(self, latents: torch.Tensor) -> None:
        """k-means on encoder outputs pooled from every process (the same rows a single process
        fed the concatenated batches would pool), so every rank starts from the same codebook."""
        (batch_sizes,) = all_reduce_sum(batch_size_slots(latents.shape[0] * latents.shape[2], latents.device))
        total_rows, first_row = global_row_range(batch_sizes)
        total_rows = int(total_rows)
        if total_rows == 0:
            # No process has a latent (every example skipped this residual stage): initialise from the next batch.
            # `total_rows` is the same on every rank, so all skip together.
            return
        budget = min(max(self.num_embeddings * KMEANS_SAMPLES_PER_CODE, KMEANS_MIN_SAMPLES), KMEANS_MAX_SAMPLES)
        # Fixed seeds make the initialisation a function of the data alone: identical on every
        # rank, whatever their random states.
        picks = torch.randperm(total_rows, generator=torch.Generator().manual_seed(0))[:budget].to(latents.device)
        pooled = take_global_rows(latents, picks, first_row)
        if not torch.isfinite(pooled).all():
            # k-means on non-finite latents would leave a non-finite codebook for good. `pooled` is the same on
            # every rank, so all skip together and initialise from the next batch.
            return
        generator = torch.Generator(device=latents.device).manual_seed(0)
        centroids, counts = kmeans(pooled, self.num_embeddings, self.kmeans_iters, generator)
        # Every rank computed the same; rank 0's copy guards against non-deterministic kernels.
        centroids = broadcast_from_first_rank(centroids.contiguous())
        counts = broadcast_from_first_rank(counts.contiguous())
        # Usage starts at the share of the batch each centroid would draw, so a centroid that
        # drew nothing is dead right away and gets restarted. The centroids weigh in the moving averages as one
        # batch does (1 - decay of its counts), not as the whole history (its counts): the encoder's outputs move
        # fast in the first hundred steps, and codes whose averages held the k-means state at full weight lagged
        # behind them and died (0.7x the codes used by vector-quantize-pytorch, which starts its averages at 0).
        self.cluster_size.copy_(counts / pooled.shape[0] * total_rows * (1 - self.decay))
        self.embedding.copy_(centroids)
        self.embed_sum.copy_(centroids * self.cluster_size.unsqueeze(1))
        self.initialized.fill_(True)

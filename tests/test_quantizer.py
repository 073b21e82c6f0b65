import math

import pytest
import torch
import torch.nn.functional as F

from hf_vqvae.quantization.base import perplexity_of
from hf_vqvae.quantization.vector_quantizer import VectorQuantizer, _sum_per_code, kmeans, nearest_codes, nearest_codes_channels_first


def make_quantizer(**kwargs) -> VectorQuantizer:
    kwargs.setdefault("dead_code_threshold", 0.0)
    return VectorQuantizer(**kwargs)


def test_nearest_codes_matches_brute_force_and_chunking():
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1000, 8, generator=generator)
    codebook = torch.randn(37, 8, generator=generator)
    expected = torch.cdist(latents, codebook).argmin(dim=1)
    assert torch.equal(nearest_codes(latents, codebook, chunk_size=64), expected)
    assert torch.equal(nearest_codes(latents, codebook, chunk_size=10_000), expected)


@pytest.mark.parametrize("chunk_size", [None, 7, 100, 256, 10_000])
def test_grouped_argmin_search_matches_brute_force_with_ties_resolved_to_the_first_code(chunk_size):
    # K = 512 takes the two-pass argmin; (B, D, L) latents are read in place, chunked across
    # and within batch elements.
    generator = torch.Generator().manual_seed(0)
    codebook = torch.randn(512, 16, generator=generator)
    codebook[300] = codebook[17]  # a duplicate: argmin keeps the first, 17
    codebook[511] = codebook[5]
    latents = torch.randn(3, 16, 50, generator=generator)
    latents[1, :, 4] = codebook[17]
    latents[2, :, 9] = codebook[5]
    rows = latents.movedim(1, -1).reshape(-1, 16)
    expected = torch.cdist(rows, codebook).argmin(dim=1).view(3, 50)
    found = nearest_codes_channels_first(latents, codebook, chunk_size)
    assert torch.equal(found, expected)
    assert found[1, 4] == 17 and found[2, 9] == 5


@pytest.mark.parametrize("shape", [(3, 5), (128, 64), (2, 5000), (0, 4)])
def test_per_code_sums_match_index_add_over_rows(shape):
    batch, length = shape
    latents = torch.randn(batch, 8, length)
    indices = torch.randint(0, 37, (batch, length))
    rows = latents.transpose(1, 2).reshape(-1, 8)
    expected = torch.zeros(37, 8).index_add_(0, indices.reshape(-1), rows)
    torch.testing.assert_close(_sum_per_code(latents, indices, 37), expected)


@pytest.mark.parametrize("training", [False, True])
def test_forward_shapes_and_quantized_values_are_exactly_codebook_rows(training):
    quantizer = make_quantizer(num_embeddings=16, embedding_dim=4).train(training)
    codebook = quantizer.embedding.detach().clone()  # a training step moves the codes afterwards
    latents = torch.randn(3, 4, 5, 6, requires_grad=True)
    out = quantizer(latents)
    assert out.quantized.shape == latents.shape
    assert out.indices.shape == (3, 5, 6)
    assert torch.equal(out.quantized, codebook[out.indices].permute(0, 3, 1, 2))
    if not training:  # decoding the codes sees exactly what the forward pass handed on
        assert torch.equal(quantizer.lookup(out.indices), out.quantized)
    sequence = quantizer(torch.randn(2, 4, 7))
    assert sequence.indices.shape == (2, 7)


def test_loss_rule_puts_beta_on_commitment_term_and_trains_codebook():
    quantizer = make_quantizer(num_embeddings=8, embedding_dim=3, update_rule="loss", commitment_cost=0.25).train()
    latents = torch.randn(4, 3, 2, 2, requires_grad=True)
    out = quantizer(latents)
    chosen = quantizer.embedding[out.indices].permute(0, 3, 1, 2)
    distance = (latents - chosen).pow(2).mean()
    torch.testing.assert_close(out.commitment_loss, distance)
    torch.testing.assert_close(out.codebook_loss, distance)
    torch.testing.assert_close(out.loss, out.codebook_loss + 0.25 * out.commitment_loss)

    (out.codebook_loss).backward(retain_graph=True)
    assert latents.grad is None or latents.grad.abs().sum() == 0  # codebook term: sg[z_e]
    assert quantizer.embedding.grad.abs().sum() > 0
    quantizer.embedding.grad = None
    out.commitment_loss.backward()
    assert latents.grad.abs().sum() > 0
    assert quantizer.embedding.grad is None or quantizer.embedding.grad.abs().sum() == 0  # sg[e]


def test_loss_rule_gradients_carry_beta_to_the_encoder_and_the_whole_codebook_term_to_the_codes():
    """Under update_rule="loss" the codebook and commitment terms are the same number, so only the gradients of
    `out.loss` tell which one beta weighs: the encoder's is beta * 2 (z - e) / N, each code's -2 sum (z - e) / N over
    the latents assigned to it (N: the number of latent elements)."""
    beta = 0.25
    quantizer = make_quantizer(num_embeddings=8, embedding_dim=3, update_rule="loss", commitment_cost=beta).train()
    latents = torch.randn(4, 3, 2, 2, requires_grad=True)
    out = quantizer(latents)
    out.loss.backward()
    difference = latents.detach() - quantizer.embedding.detach()[out.indices].permute(0, 3, 1, 2)
    count = latents.numel()
    torch.testing.assert_close(latents.grad, beta * 2 * difference / count)
    rows = difference.movedim(1, -1).reshape(-1, 3)
    expected = torch.zeros(8, 3).index_add_(0, out.indices.reshape(-1), -2 * rows / count)
    torch.testing.assert_close(quantizer.embedding.grad, expected)


def test_fused_backward_equals_autograd_of_the_textbook_formulation():
    quantizer = make_quantizer(num_embeddings=16, embedding_dim=3, update_rule="loss").train()
    latents = torch.randn(2, 3, 4, 5, requires_grad=True)
    out = quantizer(latents)
    upstream = torch.randn_like(latents)
    total = (out.quantized * upstream).sum() + 0.7 * out.commitment_loss + 1.3 * out.codebook_loss
    grad_latents, grad_codebook = torch.autograd.grad(total, [latents, quantizer.embedding])

    reference_latents = latents.detach().clone().requires_grad_(True)
    reference_codebook = quantizer.embedding.detach().clone().requires_grad_(True)
    chosen = reference_codebook[out.indices].permute(0, 3, 1, 2)
    straight_through = reference_latents + (chosen - reference_latents).detach()
    reference = (
        (straight_through * upstream).sum()
        + 0.7 * F.mse_loss(reference_latents, chosen.detach())
        + 1.3 * F.mse_loss(chosen, reference_latents.detach())
    )
    expected_latents, expected_codebook = torch.autograd.grad(reference, [reference_latents, reference_codebook])
    torch.testing.assert_close(grad_latents, expected_latents)
    torch.testing.assert_close(grad_codebook, expected_codebook)


def test_straight_through_gradient_reaches_encoder_and_ema_codebook_gets_none():
    quantizer = make_quantizer(num_embeddings=8, embedding_dim=3, update_rule="ema").train()
    latents = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = quantizer(latents)
    weights = torch.randn_like(out.quantized)
    (out.quantized * weights).sum().backward()
    # d(quantized)/d(latents) is the identity under the straight-through estimator.
    torch.testing.assert_close(latents.grad, weights)
    assert not quantizer.embedding.requires_grad
    assert quantizer.embedding.grad is None
    assert out.codebook_loss == 0


def test_ema_update_matches_equations_6_to_8_by_hand():
    # decay 0.9, not 0.5: with an asymmetric decay, gamma and 1 - gamma swapped give other numbers.
    quantizer = make_quantizer(num_embeddings=3, embedding_dim=1, decay=0.9, epsilon=1e-5).train()
    with torch.no_grad():
        quantizer.embedding.copy_(torch.tensor([[0.0], [10.0], [100.0]]))
        quantizer.cluster_size.copy_(torch.tensor([2.0, 1.0, 1.0]))
        quantizer.embed_sum.copy_(torch.tensor([[0.0], [10.0], [100.0]]))
        quantizer.initialized.fill_(True)  # EMA state set by hand: not to be seeded from the codebook
    # Latents 1, 2 -> code 0; 9 -> code 1; code 2 unused.
    out = quantizer(torch.tensor([1.0, 2.0, 9.0]).view(1, 1, 3))
    assert out.indices.tolist() == [[0, 0, 1]]

    # Eq. 6: N <- 0.9 N + 0.1 n = [1.8 + 0.2, 0.9 + 0.1, 0.9 + 0] = [2, 1, 0.9]
    torch.testing.assert_close(quantizer.cluster_size, torch.tensor([2.0, 1.0, 0.9]))
    # Eq. 7: m <- 0.9 m + 0.1 sum z = [0 + 0.3, 9 + 0.9, 90 + 0] = [0.3, 9.9, 90]
    torch.testing.assert_close(quantizer.embed_sum, torch.tensor([[0.3], [9.9], [90.0]]))
    # Eq. 8 with Laplace smoothing: e = m / ((N + eps) / (sum N + K eps) * sum N)
    total = 3.9
    smoothed = (torch.tensor([2.0, 1.0, 0.9]) + 1e-5) / (total + 3e-5) * total
    torch.testing.assert_close(quantizer.embedding.squeeze(1), torch.tensor([0.3, 9.9, 90.0]) / smoothed)
    # The unused code keeps its place (m and N decay together).
    assert math.isclose(float(quantizer.embedding[2]), 100.0, rel_tol=1e-4)


def test_the_first_training_batch_seeds_the_ema_state_from_the_codebook():
    quantizer = make_quantizer(num_embeddings=3, embedding_dim=1, decay=0.9, epsilon=1e-5)
    # A fresh quantizer's buffers are constants (transformers rebuilds buffers with `_init_weights`).
    assert not bool(quantizer.initialized) and torch.equal(quantizer.embed_sum, torch.zeros(3, 1))
    with torch.no_grad():
        quantizer.embedding.copy_(torch.tensor([[0.0], [10.0], [100.0]]))
    quantizer.eval()(torch.tensor([1.0]).view(1, 1, 1))
    assert not bool(quantizer.initialized)  # evaluation changes no state
    quantizer.train()(torch.tensor([1.0, 2.0, 9.0]).view(1, 1, 3))
    assert bool(quantizer.initialized)
    # Seeded with m = N e (N = 1) before the step: the unused code 2 keeps its place (unseeded, m = 0 would pull it
    # to 0), and the used ones move as eq. 7 says from that m: [0.9 * 0 + 0.3, 0.9 * 10 + 0.9, 0.9 * 100].
    torch.testing.assert_close(quantizer.embed_sum, torch.tensor([[0.3], [9.9], [90.0]]))
    assert math.isclose(float(quantizer.embedding[2]), 100.0, rel_tol=1e-4)
    # Seeding happens once: state set afterwards is the state the next step starts from.
    with torch.no_grad():
        quantizer.embed_sum.copy_(torch.tensor([[5.0], [5.0], [5.0]]))
    quantizer(torch.tensor([1.0]).view(1, 1, 1))
    torch.testing.assert_close(quantizer.embed_sum[2], torch.tensor([4.5]))


def test_eval_mode_changes_no_state():
    quantizer = make_quantizer(num_embeddings=8, embedding_dim=3, kmeans_init=True, dead_code_threshold=1.0).eval()
    before = {name: tensor.clone() for name, tensor in quantizer.state_dict().items()}
    quantizer(torch.randn(2, 3, 4, 4))
    for name, tensor in quantizer.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_kmeans_finds_well_separated_clusters():
    generator = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    samples = centers.repeat_interleave(250, dim=0) + 0.1 * torch.randn(1000, 2, generator=generator)
    found, counts = kmeans(samples, 32, num_iters=20, generator=generator)
    assert torch.cdist(centers, found).min(dim=1).values.max() < 0.5  # every cluster has a centroid
    assert torch.cdist(found, centers).min(dim=1).values.max() < 1.0  # and every centroid lies in a cluster
    assert counts.sum() == 1000


def test_kmeans_seeds_follow_the_density_of_the_data():
    # 900 latents in a dense blob and 100 far-off outliers: the blob deserves most of the 16 codes. k-means++ seeding
    # (each seed drawn by squared distance from the others) would spend nearly all of them on outliers.
    generator = torch.Generator().manual_seed(0)
    directions = F.normalize(torch.randn(100, 2, generator=generator), dim=1)
    outliers = directions * (50 + 50 * torch.rand(100, 1, generator=generator))
    samples = torch.cat([torch.randn(900, 2, generator=generator), outliers])
    found, counts = kmeans(samples, 16, num_iters=10, generator=generator)
    # Seeded by k-means++ the blob's latents draw 1 or 2 codes (perplexity under 4); seeded from samples 9 to 12.
    assert nearest_codes(samples[:900], found).unique().numel() >= 8
    assert perplexity_of(counts) >= 8


def test_kmeans_init_runs_once_on_first_training_batch(monkeypatch):
    from hf_vqvae.quantization import vector_quantizer

    runs = []
    monkeypatch.setattr(vector_quantizer, "kmeans", lambda *args, **kwargs: runs.append(1) or kmeans(*args, **kwargs))
    quantizer = make_quantizer(num_embeddings=4, embedding_dim=2, kmeans_init=True).train()
    assert not bool(quantizer.initialized)
    centers = torch.tensor([[-5.0, -5.0], [-5.0, 5.0], [5.0, -5.0], [5.0, 5.0]])
    latents = centers.repeat(64, 1) + 0.01 * torch.randn(256, 2)
    quantizer(latents.t().reshape(1, 2, 256))
    assert bool(quantizer.initialized) and len(runs) == 1
    assert torch.cdist(centers, quantizer.embedding).min(dim=1).values.max() < 0.1
    quantizer(torch.randn(1, 2, 256) * 100)  # a second batch must not re-run k-means
    assert len(runs) == 1


def test_kmeans_state_weighs_as_one_batch_in_the_moving_averages():
    # 64 latents at one point; the second batch moves them by +3. The centroid enters the averages with 1 - decay of
    # its count, as one batch would (with its count, the whole history, the code would follow the second batch by 1%:
    # what left codes behind a fast-moving encoder).
    quantizer = make_quantizer(num_embeddings=1, embedding_dim=2, kmeans_init=True, decay=0.99).train()
    center = torch.tensor([[-5.0, 5.0]])
    quantizer(center.repeat(64, 1).t().reshape(1, 2, 64))  # k-means, then this batch's EMA update
    one_batch = 0.01 * 64
    torch.testing.assert_close(quantizer.cluster_size, torch.tensor([0.99 * one_batch + one_batch]))
    quantizer((center + 3.0).repeat(64, 1).t().reshape(1, 2, 64))
    moved = 3.0 * one_batch / (0.99 * (0.99 * one_batch + one_batch) + one_batch)  # about a third of the way
    torch.testing.assert_close(quantizer.embedding, center + moved, rtol=0, atol=1e-3)


def test_loading_state_that_is_not_initialised_runs_kmeans_again():
    quantizer = make_quantizer(num_embeddings=4, embedding_dim=2, kmeans_init=True).train()
    quantizer(torch.randn(1, 2, 64))
    quantizer.load_state_dict(make_quantizer(num_embeddings=4, embedding_dim=2, kmeans_init=True).state_dict())
    assert not bool(quantizer.initialized)
    quantizer(torch.randn(1, 2, 64) + 100)
    assert bool(quantizer.initialized)
    assert quantizer.embedding.min() > 90  # k-means on the new batch, not the loaded random codebook


def test_usage_metrics_and_perplexity():
    quantizer = make_quantizer(num_embeddings=4, embedding_dim=1, update_rule="loss").train()
    with torch.no_grad():
        quantizer.embedding.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    out = quantizer(torch.tensor([0.0, 0.1, 1.0, 1.1]).view(1, 1, 4))
    # Two codes used equally: perplexity 2.
    torch.testing.assert_close(out.perplexity, torch.tensor(2.0))
    assert out.code_counts.tolist() == [2.0, 2.0, 0.0, 0.0]
    quantizer(torch.tensor([3.0]).view(1, 1, 1))
    assert quantizer.distinct_codes_used == 3
    assert quantizer.usage_histogram.tolist() == [2.0, 2.0, 0.0, 1.0]
    quantizer.reset_usage()
    assert quantizer.distinct_codes_used == 0


def test_dead_codes_restart_with_fresh_ema_state():
    # 64 latents near 0, all nearest code 0. Usage averages after the step (decay 0.9): [13.6, 0.9, 7.2, 7.2],
    # mean 7.225, so half of it is a bound of 3.6125.
    quantizer = make_quantizer(num_embeddings=4, embedding_dim=2, dead_code_threshold=0.5, decay=0.9).train()
    with torch.no_grad():
        quantizer.embedding.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 200.0], [300.0, 300.0]]))
        quantizer.embed_sum.copy_(quantizer.embedding * 8.0)
        quantizer.cluster_size.copy_(torch.tensor([8.0, 1.0, 8.0, 8.0]))
        quantizer.initialized.fill_(True)
    latents = torch.randn(1, 2, 64) * 0.1
    quantizer(latents)
    # Codes 1-3 got no assignments; code 1 fell below the bound (0.9) and was restarted onto a latent.
    restarted = quantizer.embedding[1]
    assert torch.cdist(restarted[None], latents[0].t()).min() < 1e-6
    bound = torch.tensor(0.5 * 7.225)
    torch.testing.assert_close(quantizer.cluster_size[1], bound)  # usage restarts at the bound
    torch.testing.assert_close(quantizer.embed_sum[1], bound * restarted)
    # Codes 2-3 decayed to 7.2 but stay above the bound: untouched.
    torch.testing.assert_close(quantizer.embedding[2], torch.tensor([200.0, 200.0]), rtol=1e-4, atol=0)


def test_restarted_code_that_wins_its_share_is_not_restarted_again():
    # Code 1 gets nothing from the first batch and falls below the bound (a quarter of the mean usage average). A
    # usage that restarted lower than the bound (say at 0) could not climb back above it within a batch, so the
    # code would be re-seeded every step however much data it won.
    quantizer = make_quantizer(num_embeddings=2, embedding_dim=2, dead_code_threshold=0.25, decay=0.99).train()
    with torch.no_grad():
        quantizer.embedding.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0]]))
        quantizer.cluster_size.copy_(torch.tensor([2.0, 0.1]))
        quantizer.embed_sum.copy_(quantizer.embedding * quantizer.cluster_size[:, None])
        quantizer.initialized.fill_(True)
    quantizer(torch.randn(1, 2, 64))  # usage averages [2.62, 0.099]: code 1 is restarted at the bound
    bound = 0.25 * (2.62 + 0.099) / 2
    assert math.isclose(float(quantizer.cluster_size[1]), bound, rel_tol=1e-5)
    # Half the second batch around each code: the restarted one wins its share.
    codes = quantizer.embedding.detach().clone()
    second_batch = (codes.repeat_interleave(32, dim=0) + 0.01 * torch.randn(64, 2)).t().unsqueeze(0)
    counts = quantizer(second_batch).code_counts
    assert counts.tolist() == [32.0, 32.0]
    assert float(quantizer.cluster_size[1]) >= 0.25 * float(quantizer.cluster_size.mean())
    assert not (quantizer.embedding[1] == second_batch[0].t()).all(dim=1).any()  # moved by EMA, not re-seeded


def test_collapsed_codebook_recovers_with_restarts():
    torch.manual_seed(0)
    data = torch.rand(4096, 2) * 10  # a uniform square: every code can find a region

    def train(threshold: float) -> int:
        quantizer = make_quantizer(num_embeddings=32, embedding_dim=2, dead_code_threshold=threshold).train()
        with torch.no_grad():  # collapse: every code at one far-away point
            quantizer.embedding.copy_(torch.full((32, 2), -50.0) + 1e-3 * torch.randn(32, 2))
            quantizer.embed_sum.copy_(quantizer.embedding)
        for _ in range(200):
            batch = data[torch.randint(0, 4096, (256,))]
            quantizer(batch.t().reshape(1, 2, 256))
        quantizer.eval()
        return int(quantizer(data.t().reshape(1, 2, -1)).indices.unique().numel())

    assert train(threshold=0.0) <= 2
    assert train(threshold=0.125) >= 30  # restart below 1 assignment per batch of 256 (mean 8)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_gives_finite_losses_and_fp32_indices(dtype):
    torch.manual_seed(0)
    quantizer = make_quantizer(num_embeddings=512, embedding_dim=64, update_rule="loss")
    with torch.no_grad():
        quantizer.embedding.normal_()
    latents = torch.randn(4, 64, 8, 8) * 30
    quantizer.eval()
    reference = quantizer(latents)
    quantizer.train()
    with torch.autocast("cpu", dtype=dtype):
        out = quantizer(latents.to(dtype))
    assert out.quantized.dtype == dtype
    assert torch.isfinite(out.loss) and torch.isfinite(out.commitment_loss) and torch.isfinite(out.perplexity)
    expected = quantizer.eval()(latents.to(dtype).float()).indices
    assert torch.equal(out.indices, expected)
    assert (out.indices == reference.indices).float().mean() > 0.95


def test_bf16_weights_keep_unused_codes_finite():
    quantizer = make_quantizer(num_embeddings=64, embedding_dim=8).to(torch.bfloat16).train()
    for _ in range(50):
        out = quantizer(torch.randn(2, 8, 2, 2, dtype=torch.bfloat16))
    assert torch.isfinite(quantizer.embedding.float()).all()
    assert torch.isfinite(out.loss)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="update_rule must be one of"):
        VectorQuantizer(update_rule="gumbel")
    quantizer = make_quantizer(num_embeddings=8, embedding_dim=4)
    with pytest.raises(ValueError, match=r"shape \(batch, 4, \*spatial\)"):
        quantizer(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"must lie in \[0, 8\)"):
        quantizer.lookup(torch.tensor([[0, 8]]))
    with pytest.raises(ValueError, match="integer tensor"):
        quantizer.lookup(torch.tensor([[0.0, 1.0]]))

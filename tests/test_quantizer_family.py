"""The quantizer family beyond the paper's VQ: gradients against hand-worked values, the code layouts priors read,
fp32 under bf16 autocast, usage reporting, and bad settings named with their allowed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_vqvae import VQVAEConfig
from hf_vqvae.quantization import lookup_free
from hf_vqvae.quantization.code_layout import CodeLayout
from hf_vqvae.quantization.factory import build_quantizer
from hf_vqvae.quantization.finite_scalar import FiniteScalarQuantizer
from hf_vqvae.quantization.lookup_free import LookupFreeQuantizer, _MeanCodeDistributionEntropy
from hf_vqvae.quantization.residual import ResidualVectorQuantizer
from hf_vqvae.quantization.sim_vq import SimVectorQuantizer
from hf_vqvae.quantization.vector_quantizer import VectorQuantizer, rotated_gradient


# One config per variant, on latents of D = 4 channels (tiny enough for every test).
VARIANTS = {
    "vq": dict(num_embeddings=16),
    "vq_rotation": dict(num_embeddings=16, rotation_trick=True),
    "vq_cosine_factorised": dict(num_embeddings=16, cosine_similarity=True, codebook_dim=2),
    "residual_vq": dict(quantizer_type="residual_vq", num_embeddings=16, num_quantizers=3, quantizer_dropout=0.5),
    "simvq": dict(quantizer_type="simvq", num_embeddings=16, rotation_trick=True),
    "fsq": dict(quantizer_type="fsq", fsq_levels=[4, 3, 3], num_embeddings=36),
    "lfq": dict(quantizer_type="lfq", num_embeddings=16),
}


def variant_quantizer(name: str):
    return build_quantizer(VQVAEConfig(embedding_dim=4, **VARIANTS[name]))


# ------------------------------------------------------------------------------------------------ rotation trick


def test_rotation_trick_gradient_matches_the_hand_worked_rotation():
    # e = (1, 0) is quantized to q = (0, 2): R turns e's direction by +90 degrees onto q's and lambda = |q| / |e| = 2,
    # so the gradient is 2 R^T g = 2 (g2, -g1).
    quantizer = VectorQuantizer(num_embeddings=2, embedding_dim=2, update_rule="loss", rotation_trick=True)
    with torch.no_grad():
        quantizer.embedding.copy_(torch.tensor([[0.0, 2.0], [10.0, 10.0]]))
    latents = torch.tensor([1.0, 0.0]).view(1, 2, 1).requires_grad_(True)
    out = quantizer.train()(latents)
    assert out.quantized.flatten().tolist() == [0.0, 2.0]
    (out.quantized * torch.tensor([3.0, 5.0]).view(1, 2, 1)).sum().backward()
    torch.testing.assert_close(latents.grad.flatten(), torch.tensor([10.0, -6.0]))


def test_rotation_trick_scales_parallel_vectors_and_keeps_the_gradient_norm_times_lambda():
    grad = torch.tensor([0.3, -1.2, 2.0]).view(1, 3, 1)
    source = torch.tensor([1.0, 2.0, 2.0]).view(1, 3, 1)
    torch.testing.assert_close(rotated_gradient(grad, source, 2.5 * source), 2.5 * grad)  # no turn: R = I
    target = torch.tensor([-3.0, 0.5, 4.0]).view(1, 3, 1)
    rotated = rotated_gradient(grad, source, target)
    # R is orthogonal: only lambda = |target| / |source| changes the norm.
    scale = target.norm() / source.norm()
    torch.testing.assert_close(rotated.norm(), scale * grad.norm())
    # R^T maps target's direction back onto source's: a gradient along target becomes one along source.
    along_target = rotated_gradient(target / target.norm(), source, target)
    torch.testing.assert_close(along_target, scale * source / source.norm())


# ------------------------------------------------------------------------------------------------ VQ options


def test_cosine_factorised_codes_match_the_textbook_formulation_with_autograd():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(16, 4, update_rule="loss", cosine_similarity=True, codebook_dim=2).train()
    latents = torch.randn(2, 4, 3, 5, requires_grad=True)
    out = quantizer(latents)
    upstream = torch.randn_like(latents)
    total = (out.quantized * upstream).sum() + 0.7 * out.commitment_loss + 1.3 * out.codebook_loss
    parameters = [latents, quantizer.embedding, quantizer.project_in.weight, quantizer.project_out.weight]
    grads = torch.autograd.grad(total, parameters)

    # project in, l2-normalise, nearest normalised code, straight through, project out.
    projected = torch.einsum("cd,bdhw->bchw", quantizer.project_in.weight, latents) + quantizer.project_in.bias.view(1, -1, 1, 1)
    normalised = F.normalize(projected, dim=1, eps=1e-6)
    codebook = F.normalize(quantizer.embedding, dim=1, eps=1e-6)
    rows = normalised.detach().movedim(1, -1).reshape(-1, 2)
    indices = torch.cdist(rows, codebook).argmin(dim=1).view(2, 3, 5)
    assert torch.equal(out.indices, indices)
    chosen = codebook[indices].movedim(-1, 1)
    straight = normalised + (chosen - normalised).detach()
    expected_quantized = torch.einsum("dc,bchw->bdhw", quantizer.project_out.weight, straight) + quantizer.project_out.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out.quantized, expected_quantized)
    reference = (
        (expected_quantized * upstream).sum()
        + 0.7 * F.mse_loss(normalised, chosen.detach())
        + 1.3 * F.mse_loss(chosen, normalised.detach())
    )
    for got, expected in zip(grads, torch.autograd.grad(reference, parameters)):
        torch.testing.assert_close(got, expected)
    assert torch.equal(quantizer.eval().lookup(out.indices), out.quantized.detach())


def test_cosine_codes_with_ema_and_restarts_stay_unit_vectors_and_finite():
    quantizer = VectorQuantizer(8, 3, cosine_similarity=True, kmeans_init=True, dead_code_threshold=0.5).train()
    for _ in range(5):
        out = quantizer(torch.randn(4, 3, 6) * 5)
    assert torch.isfinite(quantizer.embedding).all()
    torch.testing.assert_close(quantizer.codebook_vectors().norm(dim=1), torch.ones(8))
    torch.testing.assert_close(out.quantized.norm(dim=1), torch.ones(4, 6))


# ------------------------------------------------------------------------------------------------ FSQ


def test_fsq_rounds_bounded_channels_with_the_hand_worked_gradient():
    quantizer = FiniteScalarQuantizer(levels=[5, 4], embedding_dim=2)
    latents = torch.tensor([0.3, 0.0]).view(1, 2, 1).requires_grad_(True)
    out = quantizer(latents)
    # Odd L = 5: tanh(0.3) * 2.002 = 0.584 rounds to 1, divided by floor(5/2) = 2. Even L = 4: shift atanh(0.5/1.5015),
    # tanh(0 + shift) * 1.5015 - 0.5 = 0.0005 rounds to 0.
    assert out.quantized.flatten().tolist() == [0.5, 0.0]
    # Level indices 1 + 2 = 3 and 0 + 2 = 2, mixed radix (5, 4): 3 + 5 * 2 = 13.
    assert out.indices.tolist() == [[13]]
    out.quantized.sum().backward()
    shift = math.atanh(0.5 / 1.5015)
    expected = [(1 - math.tanh(0.3) ** 2) * 2.002 / 2, (1 - math.tanh(shift) ** 2) * 1.5015 / 2]
    torch.testing.assert_close(latents.grad.flatten(), torch.tensor(expected))
    assert out.loss == 0 and out.commitment_loss == 0


def test_fsq_indices_are_mixed_radix_numbers_of_every_grid_point_and_lookup_inverts_them():
    quantizer = FiniteScalarQuantizer(levels=[3, 4, 5], embedding_dim=3).eval()
    every_code = quantizer.lookup(torch.arange(60).view(1, 60))
    assert every_code.unique(dim=2).shape[2] == 60
    # The latents the bound maps onto each code exactly: z = atanh((code * floor(L / 2) + offset) / h) - shift.
    levels = torch.tensor([3.0, 4.0, 5.0]).view(1, 3, 1)
    half_range, offset = (levels - 1) * 1.001 / 2, (levels % 2 == 0) * 0.5
    preimages = torch.atanh((every_code * (levels // 2) + offset) / half_range) - torch.atanh(offset / half_range)
    assert torch.equal(quantizer(preimages).indices, torch.arange(60).view(1, 60))
    digits = torch.stack([torch.arange(60) % 3, torch.arange(60) // 3 % 4, torch.arange(60) // 12])
    torch.testing.assert_close(every_code[0], (digits - levels[0] // 2) / (levels[0] // 2))
    latents = torch.randn(2, 3, 4, 4) * 2
    out = quantizer(latents)
    assert torch.equal(quantizer.lookup(out.indices), out.quantized)


# ------------------------------------------------------------------------------------------------ LFQ


def test_lfq_signs_give_binary_indices_straight_through():
    quantizer = LookupFreeQuantizer(num_embeddings=8, embedding_dim=3).eval()
    latents = torch.tensor([[0.5, -0.2], [-1.0, 0.1], [2.0, 0.3]]).unsqueeze(0).requires_grad_(True)
    out = quantizer(latents)
    assert out.quantized[0].t().tolist() == [[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]]
    assert out.indices.tolist() == [[1 + 4, 2 + 4]]  # channel i is worth 2**i
    weights = torch.randn_like(latents)
    (out.quantized * weights).sum().backward()
    torch.testing.assert_close(latents.grad, weights)
    assert torch.equal(quantizer.lookup(out.indices), out.quantized.detach())
    torch.testing.assert_close(out.commitment_loss, (latents.detach() - out.quantized.detach()).square().mean())


def reference_entropy_penalty(code_space: torch.Tensor, temperature: float, gamma: float) -> torch.Tensor:
    """The penalty as MAGVIT-v2 and vector-quantize-pytorch write it: a softmax over all K corners per latent."""
    bits = code_space.shape[1]
    corners = ((torch.arange(2**bits)[:, None] >> torch.arange(bits)) & 1).to(code_space.dtype) * 2 - 1
    rows = code_space.transpose(1, 2).reshape(-1, bits)
    probabilities = torch.softmax(2 * rows @ corners.t() / temperature, dim=1)
    per_latent = -(probabilities * probabilities.clamp(min=1e-30).log()).sum(dim=1).mean()
    mean = probabilities.mean(dim=0)
    return per_latent - gamma * -(mean * mean.clamp(min=1e-30).log()).sum()


def test_lfq_entropy_penalty_and_its_gradient_equal_the_full_softmax_over_every_code(monkeypatch):
    monkeypatch.setattr(lookup_free, "ENTROPY_CHUNK_SCORES", 40)  # several chunks of 2-3 rows
    torch.manual_seed(0)
    quantizer = LookupFreeQuantizer(num_embeddings=16, embedding_dim=4, temperature=0.5, diversity_gamma=0.7).train()
    code_space = (torch.randn(3, 4, 5, dtype=torch.float64) * 0.4).requires_grad_(True)
    penalty = quantizer._entropy_penalty(code_space)
    expected = reference_entropy_penalty(code_space, 0.5, 0.7)
    torch.testing.assert_close(penalty, expected)
    torch.testing.assert_close(*(torch.autograd.grad(value, code_space)[0] for value in (penalty, expected)))


def test_lfq_batch_entropy_passes_gradcheck(monkeypatch):
    monkeypatch.setattr(lookup_free, "ENTROPY_CHUNK_SCORES", 20)
    logits = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_MeanCodeDistributionEntropy.apply, (logits,))


# ------------------------------------------------------------------------------------------------ residual VQ


def test_residual_stages_quantize_residuals_and_fewer_stages_decode_coarser():
    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(num_embeddings=8, embedding_dim=3, num_quantizers=3, update_rule="loss").eval()
    with torch.no_grad():
        for number, stage in enumerate(quantizer.stages):
            stage.embedding.normal_(std=2.0**-number)
    latents = torch.randn(2, 3, 4, 5)
    out = quantizer(latents)
    assert out.indices.shape == (2, 3, 4, 5)
    residual, total = latents, torch.zeros_like(latents)
    for number, stage in enumerate(quantizer.stages):
        rows = residual.movedim(1, -1).reshape(-1, 3)
        chosen = torch.cdist(rows, stage.embedding).argmin(dim=1).view(2, 4, 5)
        assert torch.equal(out.indices[:, number], chosen), number
        code = stage.embedding[chosen].movedim(-1, 1)
        total, residual = total + code, residual - code
        torch.testing.assert_close(quantizer.lookup(out.indices[:, : number + 1]), total)
    torch.testing.assert_close(out.quantized, total)
    errors = [(quantizer.lookup(out.indices[:, :k]) - latents).square().mean() for k in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


def test_residual_vq_passes_the_decoder_gradient_once_and_every_stage_commits():
    # The loss rule: the codebooks stay as the forward pass used them.
    quantizer = ResidualVectorQuantizer(num_embeddings=8, embedding_dim=3, num_quantizers=3, update_rule="loss").train()
    latents = torch.randn(2, 3, 6, requires_grad=True)
    out = quantizer(latents)
    weights = torch.randn_like(latents)
    (out.quantized * weights).sum().backward(retain_graph=True)
    torch.testing.assert_close(latents.grad, weights)  # straight through the sum: identity, not N x identity
    latents.grad = None
    out.commitment_loss.backward()
    # Stage i commits z - sg[sum_{j<i} e_j] to e_i: the gradient sums 2 (z - sum_{j<=i} e_j) / numel over stages.
    codes = [quantizer.stages[i].embedding[out.indices[:, i]].movedim(-1, 1) for i in range(3)]
    partial = torch.cumsum(torch.stack(codes), dim=0)
    expected = sum(2 * (latents.detach() - partial[i]) / latents.numel() for i in range(3))
    torch.testing.assert_close(latents.grad, expected)


def test_quantizer_dropout_keeps_a_prefix_of_stages_per_example_and_only_in_training():
    quantizer = ResidualVectorQuantizer(
        num_embeddings=8, embedding_dim=3, num_quantizers=4, quantizer_dropout=1.0, update_rule="loss"
    ).train()
    latents = torch.randn(400, 3, 2)
    out = quantizer(latents)
    used = (out.indices[:, :, 0] >= 0).sum(dim=1)
    # Every example keeps a prefix of n in [1, 4] stages, n uniform: about 100 examples each (binomial sd 8.7).
    assert torch.equal(out.indices[:, :, 0] >= 0, torch.arange(4) < used[:, None])
    counts = torch.bincount(used, minlength=5)[1:]
    assert ((counts > 70) & (counts < 130)).all(), counts
    for example in range(0, 400, 7):
        torch.testing.assert_close(out.quantized[example], quantizer.lookup(out.indices[example : example + 1, : used[example]])[0])
    assert quantizer.stages[3].usage_histogram.sum() == 2 * int((used == 4).sum())  # only the examples that used it
    # A new step draws anew; evaluation never drops.
    assert not torch.equal(quantizer(latents).indices >= 0, out.indices >= 0)
    assert (quantizer.eval()(latents).indices >= 0).all()


# ------------------------------------------------------------------------------------------------ SimVQ


def test_simvq_codes_are_the_frozen_codebook_through_the_learned_map():
    quantizer = SimVectorQuantizer(num_embeddings=16, embedding_dim=4).train()
    latents = torch.randn(2, 4, 5, requires_grad=True)
    out = quantizer(latents)
    codebook = quantizer.frozen_codebook @ quantizer.codebook_transform.weight.t()
    rows = latents.detach().transpose(1, 2).reshape(-1, 4)
    assert torch.equal(out.indices.flatten(), torch.cdist(rows, codebook).argmin(dim=1))
    torch.testing.assert_close(out.quantized, codebook[out.indices].transpose(1, 2))
    out.codebook_loss.backward()
    assert quantizer.codebook_transform.weight.grad.abs().sum() > 0  # the map learns from the codebook term
    assert quantizer.frozen_codebook.grad is None and not quantizer.frozen_codebook.requires_grad
    assert latents.grad is None


# ------------------------------------------------------------------------------------------------ every variant


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_computes_in_fp32_under_bf16_autocast(name):
    torch.manual_seed(0)
    quantizer = variant_quantizer(name)
    latents = (torch.randn(2, 4, 4, 4) * 3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer.train()(latents)
    assert out.quantized.dtype == torch.bfloat16
    for value in (out.loss, out.commitment_loss, out.perplexity):
        assert value.dtype == torch.float32 and torch.isfinite(value)
    expected = quantizer.eval()(latents.float())
    assert torch.equal(quantizer(latents).indices, expected.indices)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(quantizer(latents).indices, expected.indices)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_reports_usage_and_perplexity_alike(name):
    torch.manual_seed(0)
    quantizer = variant_quantizer(name).train()
    out = quantizer(torch.randn(3, 4, 5, 5))
    counts = out.code_counts.reshape(-1, quantizer.num_embeddings)
    indices = out.indices if counts.shape[0] == 1 else out.indices.transpose(0, 1).reshape(counts.shape[0], -1)
    for stage, stage_counts in enumerate(counts):
        stage_indices = indices.reshape(counts.shape[0], -1)[stage]
        expected = torch.bincount(stage_indices[stage_indices >= 0], minlength=quantizer.num_embeddings).float()
        assert torch.equal(stage_counts, expected)
    probabilities = counts / counts.sum(dim=1, keepdim=True)
    perplexities = torch.exp(-(probabilities * probabilities.clamp(min=1e-10).log()).sum(dim=1))
    torch.testing.assert_close(out.perplexity, perplexities.mean())
    assert quantizer.distinct_codes_used == int((counts > 0).sum())
    assert torch.equal(quantizer.usage_histogram.reshape(counts.shape), counts)
    quantizer.reset_usage()
    assert quantizer.distinct_codes_used == 0
    quantizer.eval()(torch.randn(3, 4, 5, 5))
    assert quantizer.distinct_codes_used == 0  # evaluation changes no state


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_decodes_its_codes_to_what_it_quantized(name):
    torch.manual_seed(0)
    quantizer = variant_quantizer(name).train()
    quantizer(torch.randn(4, 4, 3, 3))  # k-means and a step of EMA, where there are any
    quantizer.eval()
    out = quantizer(torch.randn(2, 4, 3, 3))
    torch.testing.assert_close(quantizer.lookup(out.indices), out.quantized)
    with pytest.raises(ValueError, match="integer tensor"):
        quantizer.lookup(out.indices.float())
    with pytest.raises(ValueError, match=rf"must lie in \[0, {quantizer.num_embeddings}\)"):
        quantizer.lookup(out.indices + quantizer.num_embeddings)
    with pytest.raises(ValueError, match=r"shape \(batch, 4, \*spatial\)"):
        quantizer(torch.randn(2, 3, 4))


# ------------------------------------------------------------------------------------------------ code layout


def test_residual_codes_interleave_for_priors_with_stage_offsets_and_come_back():
    layout = CodeLayout(num_embeddings=10, num_stages=3)
    codes = torch.randint(0, 10, (2, 3, 4, 5))
    grid = layout.to_prior_grid(codes)
    assert grid.shape == (2, 4, 15) and layout.prior_grid(4, 5) == (4, 15) and layout.prior_num_embeddings == 30
    # Position (row 1, column 2) holds its three stages one after the other, stage s offset by s * K.
    assert grid[0, 1, 6:9].tolist() == [codes[0, 0, 1, 2], 10 + codes[0, 1, 1, 2], 20 + codes[0, 2, 1, 2]]
    assert torch.equal(layout.from_prior_grid(grid), codes)
    # A token of another stage is read as that code of its position's stage.
    grid[0, 1, 6] = 27
    assert layout.from_prior_grid(grid)[0, 0, 1, 2] == 7
    speech = torch.randint(0, 10, (2, 3, 7))
    assert layout.to_prior_grid(speech).shape == (2, 21) and torch.equal(layout.from_prior_grid(layout.to_prior_grid(speech)), speech)
    single, first_stage = CodeLayout(num_embeddings=10), codes[:, 0]
    assert single.to_prior_grid(first_stage) is first_stage and single.prior_grid(4, 5) == (4, 5)


def test_code_checks_name_the_shape_the_stages_and_the_range():
    layout = CodeLayout(num_embeddings=10, num_stages=3)
    check = lambda codes: layout.check_codes("indices", codes, ("height", "width"), (4, 5))  # noqa: E731
    check(torch.zeros(2, 2, 4, 5, dtype=torch.long))  # the first two stages: a lower bitrate
    with pytest.raises(ValueError, match=r"`indices` must have shape \(batch, stages <= 3, height, width\) = \(batch, stages <= 3, 4, 5\), got \(2, 4, 5\)"):
        check(torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"holds 4 residual stages; pass between 1 and 3"):
        check(torch.zeros(2, 4, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must hold codes in \[0, 10\) \(num_embeddings\), got values in \[10, 10\]"):
        check(torch.full((2, 3, 4, 5), 10))
    with pytest.raises(ValueError, match="must be an integer tensor of codes"):
        check(torch.zeros(2, 3, 4, 5))


# ------------------------------------------------------------------------------------------------ bad settings


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(quantizer_type="gumbel"), r"quantizer_type must be one of \('vq', 'residual_vq', 'simvq', 'fsq', 'lfq'\), got 'gumbel'"),
        (dict(quantizer_type="fsq"), r"fsq_levels must be a non-empty list of integers >= 3 with quantizer_type='fsq', e\.g\. \[8, 5, 5, 5\], got None"),
        (dict(quantizer_type="fsq", fsq_levels=[8, 2]), r"fsq_levels must be a non-empty list of integers >= 3.*got \[8, 2\]"),
        (dict(quantizer_type="fsq", fsq_levels=[8, 5, 5, 5]), r"num_embeddings must be 1000, the product of fsq_levels \[8, 5, 5, 5\].*got 512"),
        (dict(quantizer_type="lfq", num_embeddings=1000), r"num_embeddings must be a power of two with quantizer_type='lfq'.*got 1000"),
        (dict(quantizer_type="residual_vq"), r"num_quantizers must be an integer >= 2 with quantizer_type='residual_vq'.*got 1"),
        (dict(num_quantizers=4), r"num_quantizers must be 1 with quantizer_type='vq' \(it applies to residual_vq\), got 4"),
        (dict(quantizer_type="fsq", fsq_levels=[8, 8], num_embeddings=64, rotation_trick=True),
         r"rotation_trick must be False with quantizer_type='fsq' \(it applies to vq, residual_vq, simvq\), got True"),
        (dict(quantizer_type="residual_vq", num_quantizers=2, cosine_similarity=True), r"cosine_similarity must be False with quantizer_type='residual_vq' \(it applies to vq\)"),
        (dict(quantizer_type="lfq", num_embeddings=16, codebook_dim=2), r"codebook_dim must be None with quantizer_type='lfq'"),
        (dict(fsq_levels=[8, 5]), r"fsq_levels must be None with quantizer_type='vq' \(it applies to fsq\), got \[8, 5\]"),
        (dict(codebook_dim=0), r"codebook_dim must be None or an integer >= 1, got 0"),
        (dict(quantizer_type="residual_vq", num_quantizers=2, quantizer_dropout=1.5), r"quantizer_dropout must be a finite number in \[0, 1\], got 1\.5"),
        (dict(quantizer_type="lfq", num_embeddings=16, lfq_temperature=0.0), r"lfq_temperature must be a finite number > 0, got 0\.0"),
        (dict(rotation_trick="yes"), r"rotation_trick must be True or False, got 'yes'"),
    ],
)
def test_bad_quantizer_settings_name_the_field_the_value_and_what_is_allowed(fields, message):
    with pytest.raises(ValueError, match=rf"VQVAEConfig\.{message}"):
        VQVAEConfig(**fields)


def test_quantizer_arguments_are_checked_when_built_directly():
    with pytest.raises(ValueError, match=r"levels must be a non-empty list of integers >= 3.*got \[4, 2\]"):
        FiniteScalarQuantizer([4, 2], embedding_dim=2)
    with pytest.raises(ValueError, match="power of two >= 2, got 12"):
        LookupFreeQuantizer(12, embedding_dim=2)
    with pytest.raises(ValueError, match="num_quantizers must be an integer >= 1, got 0"):
        ResidualVectorQuantizer(num_quantizers=0)
    with pytest.raises(ValueError, match=r"quantizer_dropout must be a probability in \[0, 1\], got -0.1"):
        ResidualVectorQuantizer(quantizer_dropout=-0.1)
    with pytest.raises(ValueError, match="codebook_dim must be None or an integer >= 1, got 0"):
        VectorQuantizer(codebook_dim=0)
    quantizer = ResidualVectorQuantizer(num_embeddings=8, embedding_dim=2, num_quantizers=2)
    with pytest.raises(ValueError, match=r"\(batch, stages, \*spatial\) with 1 <= stages <= 2"):
        quantizer.lookup(torch.zeros(1, 3, 4, dtype=torch.long))

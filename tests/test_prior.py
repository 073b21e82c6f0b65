"""The gated PixelCNN prior: causality, cached sampling, learning a known distribution, serialisation, input checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_vqvae.models.pixelcnn_prior.configuration_pixelcnn_prior import PixelCNNPriorConfig
from hf_vqvae.models.pixelcnn_prior.modeling_pixelcnn_prior import PixelCNNPriorModel, PixelCNNPriorOutput
from conftest import record_drawn_logits, seeded


def tiny_config(**overrides) -> PixelCNNPriorConfig:
    # A non-square grid catches height/width mix-ups.
    fields = dict(
        num_embeddings=9, grid_height=5, grid_width=6, hidden_channels=16, num_layers=3, kernel_size=5,
        skip_channels=16,
    )
    return PixelCNNPriorConfig(**{**fields, **overrides})


def tiny_model(seed: int = 0, **overrides) -> PixelCNNPriorModel:
    torch.manual_seed(seed)
    return PixelCNNPriorModel(tiny_config(**overrides)).eval()



def random_codes(config: PixelCNNPriorConfig, batch_size: int, seed: int = 0) -> torch.Tensor:
    shape = (batch_size, config.grid_height, config.grid_width)
    return torch.randint(config.num_embeddings, shape, generator=seeded(seed))


# ------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_embeddings", 1),
        ("grid_height", 0),
        ("grid_width", -2),
        ("hidden_channels", 0),
        ("num_layers", 0),
        ("skip_channels", 0),
        ("num_classes", -1),
        ("kernel_size", 4),
        ("kernel_size", 1),
        ("num_layers", 2.0),
        ("grid_height", True),
    ],
)
def test_config_rejects_bad_fields(field, value):
    with pytest.raises(ValueError, match=rf"PixelCNNPriorConfig\.{field} must be .*got {value!r}"):
        PixelCNNPriorConfig(**{field: value})


def test_config_presets_set_the_code_grid():
    config = PixelCNNPriorConfig.from_preset("dmlab84", num_layers=2)
    assert (config.num_embeddings, config.grid_height, config.grid_width, config.num_layers) == (512, 21, 21, 2)
    assert PixelCNNPriorConfig.from_preset("imagenet128").num_classes == 1000
    with pytest.raises(ValueError, match="unknown PixelCNN prior preset 'mnist'"):
        PixelCNNPriorConfig.from_preset("mnist")


# ------------------------------------------------------------------------------------------------- forward


def test_forward_returns_logits_and_nll_in_nats():
    model = tiny_model()
    codes = random_codes(model.config, batch_size=3)
    output = model(input_ids=codes, labels=codes)
    assert isinstance(output, PixelCNNPriorOutput)
    assert output.logits.shape == (3, 9, 5, 6)
    assert torch.allclose(output.loss, F.cross_entropy(output.logits, codes))

    loss, logits = model(input_ids=codes, labels=codes, return_dict=False)
    assert torch.equal(logits, output.logits) and torch.equal(loss, output.loss)
    (logits_only,) = model(input_ids=codes, return_dict=False)
    assert torch.equal(logits_only, logits)
    assert model(input_ids=codes).loss is None

    bits = model.bits_per_code(codes)
    assert bits.shape == (3,)
    assert torch.allclose(bits.mean(), output.loss / math.log(2))


def test_class_label_changes_the_logits():
    model = tiny_model(num_classes=3)
    codes = random_codes(model.config, batch_size=2)
    first = model(codes, class_labels=torch.tensor([0, 0])).logits
    second = model(codes, class_labels=torch.tensor([0, 2])).logits
    assert torch.equal(first[0], second[0])
    assert not torch.allclose(first[1], second[1])


@pytest.mark.parametrize("kernel_size, num_layers", [(3, 4), (5, 2)])
def test_each_position_sees_every_earlier_position_and_nothing_else(kernel_size, num_layers):
    """Gradients through the code embedding: zero from the position itself and everything after it in raster
    order (causality), non-zero from every position before it (no blind spot). The depth is enough for the
    receptive field to cover the whole 4x5 grid."""
    model = tiny_model(grid_height=4, grid_width=5, kernel_size=kernel_size, num_layers=num_layers).double()
    config = model.config
    codes = random_codes(config, batch_size=1)
    embedded = []
    model.pixelcnn.code_embedding.register_forward_hook(lambda module, args, output: embedded.append(output))
    projection = torch.randn(config.num_embeddings, dtype=torch.float64, generator=seeded(1))

    positions = [(row, column) for row in range(config.grid_height) for column in range(config.grid_width)]
    for index, (row, column) in enumerate(positions):
        embedded.clear()
        logits = model(codes).logits
        (gradient,) = torch.autograd.grad(logits[0, :, row, column] @ projection, embedded[0])
        influence = gradient[0].abs().sum(-1).flatten()  # one number per grid position, raster order
        assert torch.all(influence[index:] == 0), f"position {(row, column)} sees itself or a later position"
        assert torch.all(influence[:index] > 0), f"position {(row, column)} is blind to an earlier position"


def test_logits_ignore_codes_at_and_after_their_position():
    model = tiny_model()
    codes = random_codes(model.config, batch_size=2)
    flat_index = 2 * model.config.grid_width + 3  # (row 2, column 3)
    changed = codes.clone().flatten(1)
    changed[:, flat_index:] = (changed[:, flat_index:] + 1) % model.config.num_embeddings
    changed = changed.view_as(codes)
    before = model(codes).logits.flatten(2)[:, :, : flat_index + 1]
    after = model(changed).logits.flatten(2)[:, :, : flat_index + 1]
    assert torch.allclose(before, after, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------- sampling


def sample_recording_logits(model, use_cache, recorded, **kwargs):
    """Sample, keeping the logits each step draws from; `recorded` is `record_drawn_logits`'s list."""
    recorded.clear()
    codes = model.sample(use_cache=use_cache, **kwargs)
    return codes, torch.stack(recorded, dim=-1)  # (batch, K, positions in raster order)


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("num_classes, kernel_size", [(0, 5), (3, 3)])
def test_cached_and_plain_sampling_draw_the_same_codes(batch_size, num_classes, kernel_size, sampler_step, monkeypatch):
    model = tiny_model(num_classes=num_classes, kernel_size=kernel_size)
    class_labels = torch.tensor([2, 0, 1, 2])[:batch_size] if num_classes else None
    recorded = record_drawn_logits(monkeypatch)
    for temperature in (1.0, 0.5):
        kwargs = dict(batch_size=batch_size, class_labels=class_labels, temperature=temperature)
        cached, cached_logits = sample_recording_logits(model, True, recorded, generator=seeded(3), **kwargs)
        plain, plain_logits = sample_recording_logits(model, False, recorded, generator=seeded(3), **kwargs)
        assert cached.dtype == torch.long and cached.shape == (batch_size, 5, 6)
        assert torch.equal(cached, plain)
        # The incremental computation reproduces the full network, step by step.
        assert torch.allclose(cached_logits, plain_logits, atol=1e-5)
        assert torch.allclose(cached_logits, model(cached, class_labels=class_labels).logits.flatten(2), atol=1e-5)


def test_sampling_reports_progress_per_row():
    model = tiny_model()
    calls = []
    model.sample(2, progress_callback=lambda done, total: calls.append((done, total)))
    assert calls == [(row, 5) for row in range(1, 6)]


# ------------------------------------------------------------------------------------------------- learning


NOISE = 0.1


def noisy_sum_grids(num_grids: int, num_codes: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Grids whose first code is uniform and whose every other code is (left + above) mod K (a missing neighbour
    counts as 0), replaced by a uniform code with probability NOISE."""
    grids = torch.zeros(num_grids, size, size, dtype=torch.long)
    for row in range(size):
        for column in range(size):
            left = grids[:, row, column - 1] if column else 0
            above = grids[:, row - 1, column] if row else 0
            uniform = torch.randint(num_codes, (num_grids,), generator=generator)
            if row == 0 and column == 0:
                grids[:, row, column] = uniform
                continue
            keep = torch.rand(num_grids, generator=generator) >= NOISE
            grids[:, row, column] = torch.where(keep, (left + above) % num_codes, uniform)
    return grids


def noisy_sum_entropy_per_code(num_codes: int, size: int) -> float:
    """Exact entropy in nats per code: log K for the first code, then a noisy copy of a known value."""
    p_kept = 1 - NOISE + NOISE / num_codes
    p_other = NOISE / num_codes
    noisy_code = -p_kept * math.log(p_kept) - (num_codes - 1) * p_other * math.log(p_other)
    return (math.log(num_codes) + (size * size - 1) * noisy_code) / (size * size)


def test_training_brings_the_nll_to_the_true_entropy():
    num_codes, size = 4, 4
    torch.manual_seed(0)
    model = PixelCNNPriorModel(
        PixelCNNPriorConfig(
            num_embeddings=num_codes, grid_height=size, grid_width=size, hidden_channels=32, num_layers=3,
            kernel_size=3, skip_channels=32,
        )
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = seeded(0)
    for _ in range(300):
        codes = noisy_sum_grids(64, num_codes, size, generator)
        loss = model(input_ids=codes, labels=codes).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    held_out = noisy_sum_grids(2048, num_codes, size, generator)
    with torch.no_grad():
        nll = model(input_ids=held_out, labels=held_out).loss.item()
    entropy = noisy_sum_entropy_per_code(num_codes, size)
    assert abs(nll - entropy) < 0.03, f"NLL {nll:.3f} nats/code, true entropy {entropy:.3f} (uniform {math.log(4):.3f})"


# ------------------------------------------------------------------------------------------------- serialisation


def test_save_and_load_give_identical_logits(tmp_path):
    model = tiny_model(num_classes=3)
    codes = random_codes(model.config, batch_size=2)
    class_labels = torch.tensor([1, 2])
    model.save_pretrained(tmp_path)
    loaded = PixelCNNPriorModel.from_pretrained(tmp_path).eval()
    saved_fields, loaded_fields = model.config.to_dict(), loaded.config.to_dict()
    del saved_fields["_name_or_path"], loaded_fields["_name_or_path"]
    assert loaded_fields == saved_fields
    assert torch.equal(loaded(codes, class_labels).logits, model(codes, class_labels).logits)


# ------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make_codes, message",
    [
        (lambda codes: codes.float(), "`{name}` must be an integer tensor of codes .*got torch.float32"),
        (lambda codes: codes.bool(), "`{name}` must be an integer tensor of codes"),
        (lambda codes: codes.tolist(), "`{name}` must be an integer tensor of codes .*got list"),
        (lambda codes: codes.clone().fill_(9), r"`{name}` must hold codes in \[0, 9\) \(num_embeddings\), .*\[9, 9\]"),
        (lambda codes: codes.clone().fill_(-1), r"`{name}` must hold codes in \[0, 9\)"),
        (lambda codes: codes[:, :4], r"`{name}` must have shape \(batch_size, 5, 6\).*got \(2, 4, 6\)"),
        (lambda codes: codes[0], r"`{name}` must have shape \(batch_size, 5, 6\)"),
    ],
)
def test_forward_rejects_bad_codes(make_codes, message):
    model = tiny_model()
    codes = random_codes(model.config, batch_size=2)
    with pytest.raises(ValueError, match=message.format(name="input_ids")):
        model(input_ids=make_codes(codes))
    with pytest.raises(ValueError, match=message.format(name="labels")):
        model(input_ids=codes, labels=make_codes(codes))
    with pytest.raises(ValueError, match=message.format(name="input_ids")):
        model.bits_per_code(make_codes(codes))


@pytest.mark.parametrize(
    "num_classes, class_labels, message",
    [
        (0, torch.tensor([0, 1]), r"unconditional prior \(num_classes=0\)"),
        (3, None, r"class-conditional \(num_classes=3\)"),
        (3, torch.tensor([0, 3]), r"class_labels must lie in \[0, 3\)"),
        (3, torch.tensor([-1, 0]), r"class_labels must lie in \[0, 3\)"),
        (3, torch.tensor([0.0, 1.0]), "class_labels must be integers"),
        (3, torch.tensor([0, 1, 2]), r"class_labels must have shape \(2,\)"),
    ],
)
def test_forward_and_sample_reject_bad_class_labels(num_classes, class_labels, message):
    model = tiny_model(num_classes=num_classes)
    codes = random_codes(model.config, batch_size=2)
    with pytest.raises(ValueError, match=message):
        model(input_ids=codes, class_labels=class_labels)
    with pytest.raises(ValueError, match=message):
        model.sample(2, class_labels=class_labels)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), "batch_size must be a positive integer, got 0"),
        (dict(batch_size=2.0), "batch_size must be a positive integer, got 2.0"),
        (dict(temperature=0.0), r"temperature must be a finite number >= 0.001 .*, got 0.0"),
        (dict(temperature=-1.0), "temperature must be a finite number >= 0.001"),
        (dict(temperature=math.inf), "temperature must be a finite number >= 0.001"),
        (dict(temperature=1e-45), r"temperature must be a finite number >= 0.001 \(smaller ones overflow"),
        (dict(batch_size=2, generator=[torch.Generator()]), "one per grid: got 1 for batch_size=2"),
        (dict(batch_size=2, generator=[torch.Generator(), 7]), "generator must be a torch.Generator or a list of them"),
    ],
)
def test_sample_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model().sample(**kwargs)


def test_forward_rejects_labels_of_another_batch_size():
    model = tiny_model()
    codes = random_codes(model.config, batch_size=2)
    with pytest.raises(ValueError, match=r"`labels` must have the shape of `input_ids` \(2, 5, 6\), got \(1, 5, 6\)"):
        model(input_ids=codes, labels=codes[:1])


def test_compatibility_with_a_vqvae_is_checked():
    model = tiny_model()
    model.check_compatible_with_vqvae(num_embeddings=9, latent_height=5, latent_width=6)
    with pytest.raises(ValueError, match="num_embeddings=9 but the VQ-VAE's codebook has 512 codes"):
        model.check_compatible_with_vqvae(num_embeddings=512, latent_height=5, latent_width=6)
    with pytest.raises(ValueError, match=r"5x6 code grids .* latent grid is 6x5"):
        model.check_compatible_with_vqvae(num_embeddings=9, latent_height=6, latent_width=5)


def test_an_empty_batch_is_an_error_named_as_such():
    model = tiny_model()
    empty = torch.zeros(0, 5, 6, dtype=torch.long)
    with pytest.raises(ValueError, match=r"empty batch: `input_ids` holds no code grids \(batch size 0\)"):
        model(input_ids=empty, labels=empty)  # the mean NLL of nothing would be NaN
    with pytest.raises(ValueError, match=r"empty batch: `input_ids`"):
        model.bits_per_code(empty)

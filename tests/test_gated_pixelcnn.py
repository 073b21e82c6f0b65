"""The shared GatedPixelCNN: its cached sampler draws what the plain sampler draws, with and without class labels and
conditioning maps, at batch 1 and 4."""

import pytest
import torch

from hf_vqvae.layers.gated_pixelcnn import GatedPixelCNN
from hf_vqvae.layers.gated_pixelcnn_sampler import ThreadPolicy

from conftest import record_drawn_logits, seeded


HEIGHT, WIDTH, NUM_CODES = 5, 6, 16


def tiny_pixelcnn(num_classes=0, conditioning_channels=0, kernel_size=3, num_layers=3):
    torch.manual_seed(0)
    pixelcnn = GatedPixelCNN(NUM_CODES, 8, num_layers, kernel_size, 12, num_classes, conditioning_channels).eval()
    with torch.no_grad():  # sharper logits than the default initialisation's, so the codes depend on the context
        for parameter in pixelcnn.parameters():
            parameter.mul_(3)
    return pixelcnn


def conditioning_inputs(batch_size, num_classes, conditioning_channels):
    generator = torch.Generator().manual_seed(1)
    class_labels = torch.randint(num_classes, (batch_size,), generator=generator) if num_classes else None
    conditioning = (
        torch.randn(batch_size, conditioning_channels, HEIGHT, WIDTH, generator=generator)
        if conditioning_channels else None
    )
    return class_labels, conditioning



def sample_recording_logits(pixelcnn, use_cache, recorded, **kwargs):
    """Sample, keeping the logits each step draws from; `recorded` is `record_drawn_logits`'s list."""
    recorded.clear()
    codes = pixelcnn.sample(height=HEIGHT, width=WIDTH, use_cache=use_cache, **kwargs)
    assert len(recorded) == HEIGHT * WIDTH
    return codes, torch.stack(recorded, dim=-1)  # (batch, K, positions in raster order)


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize(
    "num_classes, conditioning_channels, kernel_size",
    [(0, 0, 3), (3, 0, 5), (0, 2, 3), (3, 2, 7)],
    ids=["unconditional", "class", "conditioning-map", "class-and-map"],
)
def test_cached_sampling_draws_what_plain_sampling_draws(
    batch_size, num_classes, conditioning_channels, kernel_size, sampler_step, monkeypatch
):
    pixelcnn = tiny_pixelcnn(num_classes, conditioning_channels, kernel_size)
    class_labels, conditioning = conditioning_inputs(batch_size, num_classes, conditioning_channels)
    kwargs = dict(batch_size=batch_size, class_labels=class_labels, conditioning=conditioning, temperature=0.9)
    recorded = record_drawn_logits(monkeypatch)
    cached, cached_logits = sample_recording_logits(pixelcnn, True, recorded, generator=seeded(3), **kwargs)
    plain, plain_logits = sample_recording_logits(pixelcnn, False, recorded, generator=seeded(3), **kwargs)
    assert cached.dtype == torch.long and cached.shape == (batch_size, HEIGHT, WIDTH)
    assert torch.equal(cached, plain)
    assert len(cached.unique()) > 3  # the draws depend on the logits, not on a constant
    assert torch.allclose(cached_logits, plain_logits, atol=1e-5)
    teacher_forced, _ = pixelcnn(cached, class_labels, conditioning)
    assert torch.allclose(cached_logits, teacher_forced.flatten(2), atol=1e-5)


def test_cached_sampling_reads_the_conditioning_map_at_each_position(sampler_step, monkeypatch):
    """A map that differs at one position leaves the rows above it alone (the vertical stack carries it to the
    neighbouring columns of its own row) and changes the logits there."""
    pixelcnn = tiny_pixelcnn(conditioning_channels=2)
    _, conditioning = conditioning_inputs(1, 0, 2)
    changed = conditioning.clone()
    changed[:, :, 3, 2] += 5
    recorded = record_drawn_logits(monkeypatch)
    _, logits = sample_recording_logits(pixelcnn, True, recorded, batch_size=1, conditioning=conditioning,
                                        generator=torch.Generator().manual_seed(0))
    _, changed_logits = sample_recording_logits(pixelcnn, True, recorded, batch_size=1, conditioning=changed,
                                                generator=torch.Generator().manual_seed(0))
    position = 3 * WIDTH + 2
    assert torch.equal(logits[..., : 3 * WIDTH], changed_logits[..., : 3 * WIDTH])
    assert not torch.allclose(logits[..., position], changed_logits[..., position])


def test_cached_sampling_leaves_the_thread_count_as_it_found_it():
    pixelcnn = tiny_pixelcnn()
    threads = torch.get_num_threads()
    progress = []
    pixelcnn.sample(2, HEIGHT, WIDTH, progress_callback=lambda done, total: progress.append((done, total)))
    assert torch.get_num_threads() == threads
    assert progress == [(row, HEIGHT) for row in range(1, HEIGHT + 1)]


def test_cached_sampling_on_two_threads_draws_what_plain_sampling_draws(sampler_step, every_step_on_all_threads):
    """Every row and position on two threads (the eager step: each product split; the compiled one: a row's positions
    split, and a position's grids); the codes do not change."""
    pixelcnn = tiny_pixelcnn(num_classes=3, conditioning_channels=2)
    class_labels, conditioning = conditioning_inputs(4, 3, 2)
    kwargs = dict(batch_size=4, height=HEIGHT, width=WIDTH, class_labels=class_labels, conditioning=conditioning)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cached = pixelcnn.sample(generator=torch.Generator().manual_seed(5), **kwargs)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    plain = pixelcnn.sample(generator=torch.Generator().manual_seed(5), use_cache=False, **kwargs)
    assert torch.equal(cached, plain)


def test_thread_policy_keeps_the_faster_count_and_leaves_several_threads_when_units_slow_down():
    policy = ThreadPolicy(2)
    assert [policy.threads_for(unit) for unit in range(6)] == [1, 1, 1, 2, 2, 2]
    # Units 0 and 3 are warm-ups; a count is judged by the quicker of its two timed units (unit 4 is a hiccup).
    for unit, seconds in enumerate([9.0, 1.5, 1.6, 20.0, 5.0, 1.0]):
        policy.record(unit, policy.threads_for(unit), seconds)
    assert policy.threads_for(6) == 2 and policy.chosen == 2
    policy.record(6, 2, 2.0)  # slower, but not 1.5x the one-thread time
    policy.record(7, 2, 2.3)  # a hiccup
    policy.record(8, 2, 2.3)
    policy.record(9, 2, 1.0)
    assert policy.threads_for(10) == 2
    for unit in range(10, 13):  # the machine got busy
        assert policy.chosen == 2
        policy.record(unit, 2, 2.3)
    assert policy.threads_for(13) == 1 and policy.chosen == 1
    slower = ThreadPolicy(2)
    for unit, seconds in enumerate([9.0, 1.0, 1.1, 20.0, 1.2, 1.3]):
        slower.record(unit, slower.threads_for(unit), seconds)
    assert slower.threads_for(6) == 1
    assert [ThreadPolicy(1).threads_for(unit) for unit in range(8)] == [1] * 8

"""The compiled steps of the cached samplers (`layers/fused_steps`): built once per machine into the cache, refused
cleanly where no compiler works (the samplers then run their eager step and draw the same codes), and always reading
the model's current weights. That they draw what the plain samplers draw is tested with each sampler (the
`sampler_step` fixture runs those tests with the compiled step and with the eager one)."""

import logging
import os

import pytest
import torch

from hf_vqvae.layers import fused_steps
from hf_vqvae.layers.gated_pixelcnn import GatedPixelCNN
from hf_vqvae.layers.wavenet import WaveNet


@pytest.fixture
def fresh_library(tmp_path, monkeypatch):
    """`load_library` as on a machine that never built it: an empty cache folder, nothing loaded yet."""
    monkeypatch.setenv("HF_VQVAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    fused_steps.load_library.cache_clear()
    yield tmp_path / "cache" / "fused_steps"
    fused_steps.load_library.cache_clear()


def tiny_pixelcnn(dtype=torch.float32):
    torch.manual_seed(0)
    pixelcnn = GatedPixelCNN(16, 8, 3, 3, 12, num_classes=3).to(dtype).eval()
    with torch.no_grad():  # sharper logits than the default initialisation's, so the codes depend on the context
        for parameter in pixelcnn.parameters():
            parameter.mul_(3)
    return pixelcnn


def sample(pixelcnn, use_cache=True, seed=3):
    labels = torch.tensor([0, 2])
    return pixelcnn.sample(2, 5, 6, class_labels=labels, generator=torch.Generator().manual_seed(seed), use_cache=use_cache)


def test_the_library_is_built_once_into_the_cache_and_then_loaded_from_it(fresh_library, monkeypatch):
    if fused_steps.load_library() is None:
        pytest.skip("no C++ compiler here")
    built = sorted(fresh_library.iterdir())
    assert [path.suffix for path in built] == [".so"] and not built[0].name.startswith(".building")
    modified = os.stat(built[0]).st_mtime_ns
    fused_steps.load_library.cache_clear()

    def no_compiling(*args, **kwargs):
        raise AssertionError("the cached library was compiled again")

    monkeypatch.setattr(fused_steps, "_compile", no_compiling)
    assert fused_steps.load_library() is not None
    assert sorted(fresh_library.iterdir()) == built and os.stat(built[0]).st_mtime_ns == modified


@pytest.mark.parametrize("compiler", ["missing", "failing"])
def test_without_a_working_compiler_sampling_warns_once_and_runs_the_eager_step(
    fresh_library, monkeypatch, caplog, compiler
):
    pixelcnn = tiny_pixelcnn()
    expected = sample(pixelcnn, use_cache=False)
    if compiler == "missing":
        monkeypatch.setattr(fused_steps.shutil, "which", lambda name: None)
    else:  # a compiler that exits with an error, whatever the flags
        monkeypatch.setenv("CXX", "false")
    with caplog.at_level(logging.WARNING, logger=fused_steps.__name__):
        assert torch.equal(sample(pixelcnn), expected)
        assert torch.equal(sample(pixelcnn), expected)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "eager step" in warnings[0]
    assert ("No C++ compiler" in warnings[0]) == (compiler == "missing")
    assert not fused_steps.usable_for(pixelcnn.code_embedding.weight)
    assert not any(fresh_library.glob("*.so"))


def test_the_compiled_step_runs_for_float32_cpu_weights_only_and_when_not_switched_off(monkeypatch):
    if fused_steps.load_library() is None:
        pytest.skip("no C++ compiler here")
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    assert fused_steps.usable_for(torch.zeros(1))
    assert not fused_steps.usable_for(torch.zeros(1, dtype=torch.float64))
    assert not fused_steps.usable_for(torch.zeros(1, dtype=torch.bfloat16))
    assert not fused_steps.usable_for(torch.zeros(1), torch.zeros(1, dtype=torch.float64))
    for off in ("0", "false", "off"):
        monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, off)
        assert not fused_steps.usable_for(torch.zeros(1))


def test_a_float64_model_samples_through_the_eager_step_and_matches_plain_sampling(monkeypatch):
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    pixelcnn = tiny_pixelcnn(torch.float64)
    assert torch.equal(sample(pixelcnn), sample(pixelcnn, use_cache=False))


def test_sampling_in_inference_mode_reads_the_current_weights(monkeypatch):
    """Inference-mode parameters keep no version counter: their layout is made for every draw."""
    if fused_steps.load_library() is None:
        pytest.skip("no C++ compiler here")
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    with torch.inference_mode():
        pixelcnn = tiny_pixelcnn()
        before = sample(pixelcnn)
        pixelcnn.output_logits.weight.mul_(-1)
        after = sample(pixelcnn)
        assert not torch.equal(after, before) and torch.equal(after, sample(pixelcnn, use_cache=False))


@pytest.mark.parametrize("model", ["pixelcnn", "wavenet"])
def test_the_compiled_step_reads_weights_changed_since_the_last_draw(monkeypatch, model):
    """The laid-out weights are kept between draws; an in-place update (an optimizer step) or a replaced parameter
    makes the next draw lay them out again."""
    if fused_steps.load_library() is None:
        pytest.skip("no C++ compiler here")
    monkeypatch.setenv(fused_steps.DISABLE_VARIABLE, "1")
    if model == "pixelcnn":
        network = tiny_pixelcnn()
        draw = lambda use_cache: sample(network, use_cache)  # noqa: E731
    else:
        torch.manual_seed(0)
        network = WaveNet(256, 8, 8, 8, num_layers=4, dilation_cycle=2, global_channels=3).eval()
        speaker = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
        draw = lambda use_cache: network.generate(  # noqa: E731
            2, 40, None, speaker, generator=torch.Generator().manual_seed(3), use_cache=use_cache
        )
    before = draw(True)
    optimizer = torch.optim.SGD(network.parameters(), lr=1.0)
    for parameter in network.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    after = draw(True)
    assert not torch.equal(after, before)
    assert torch.equal(after, draw(False))
    with torch.no_grad():  # a parameter replaced, not changed in place
        first = next(network.parameters())
        first.data = first.data * -1
    assert torch.equal(draw(True), draw(False))

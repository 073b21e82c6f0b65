"""The second stage of the hierarchy and its pipeline: causality, conditioning, samplers, loading, bad inputs."""

import json
import math
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoConfig, AutoModel

from hf_vqvae import (
    CheckpointMismatchError,
    HierarchicalVQVAEConfig,
    HierarchicalVQVAEModel,
    HierarchicalVQVAEPipeline,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    VQVAEConfig,
)

from conftest import put_in_hub_cache, seeded
from launching import ROOT
from model_contracts import (
    assert_export_matches_eager, assert_gradients_reach, assert_input_embeddings_are, assert_onnx_export_matches_eager,
)


# The tiny VQ-VAE's 4x4 grids of K=16 codes compressed to 3x1 codes of K=8.
TINY_STAGE2 = dict(
    input_num_embeddings=16, input_grid_height=4, input_grid_width=4, input_embedding_dim=4,
    encoder_hidden_channels=8, encoder_num_downsamples=1, num_embeddings=8, embedding_dim=4,
    conditioning_channels=4, decoder_hidden_channels=8, decoder_num_layers=3, decoder_kernel_size=3,
    decoder_skip_channels=8,
)
TINY_TOP_PRIOR = dict(num_embeddings=8, grid_height=3, grid_width=1, hidden_channels=8, num_layers=2, kernel_size=3, skip_channels=8)


def tiny_stage2(**overrides) -> HierarchicalVQVAEModel:
    return HierarchicalVQVAEModel(HierarchicalVQVAEConfig(**{**TINY_STAGE2, **overrides}))



@pytest.fixture
def pipeline(tiny_model) -> HierarchicalVQVAEPipeline:
    return HierarchicalVQVAEPipeline(
        vqvae=tiny_model.eval(), stage2=tiny_stage2().eval(), prior=PixelCNNPriorModel(PixelCNNPriorConfig(**TINY_TOP_PRIOR)).eval()
    )


def test_decoder_is_causal_over_the_stage1_codes():
    model = tiny_stage2(input_grid_height=5, input_grid_width=4, decoder_kernel_size=5).eval()
    codes = torch.randint(0, 16, (2, 5, 4))
    latents = torch.randint(0, 8, (2, 3, 1))
    logits = model.decode_logits(codes, latents)
    for position in (0, 6, 13, 19):
        row, column = divmod(position, 4)
        changed = codes.clone().flatten(1)
        changed[:, position:] = (changed[:, position:] + 1 + torch.randint(0, 15, changed[:, position:].shape)) % 16
        changed_logits = model.decode_logits(changed.view_as(codes), latents)
        before = torch.arange(20).view(5, 4) <= position
        # Every position up to and including the changed one keeps its logits; some later one moves.
        torch.testing.assert_close(changed_logits[..., before], logits[..., before], rtol=0, atol=1e-6)
        if position < 19:
            assert not torch.allclose(changed_logits[..., ~before], logits[..., ~before])


@pytest.mark.parametrize("conditioning", ["decoded", "upsampled"])
def test_decoder_depends_on_the_latents_and_gradients_reach_the_encoder(conditioning):
    model = tiny_stage2(conditioning=conditioning)
    codes = torch.randint(0, 16, (6, 4, 4))
    latents = model.encode(codes).indices
    other = (latents + 1) % 8
    assert not torch.allclose(model.decode_logits(codes, latents), model.decode_logits(codes, other))
    bottom = latents.clone()
    bottom[:, 2] = (bottom[:, 2] + 1) % 8
    difference = (model.decode_logits(codes, bottom) - model.decode_logits(codes, latents)).abs().amax(dim=(0, 1, 3))
    if conditioning == "upsampled":
        # The bottom latent only moves the logits of the rows it is laid over (and a 3x3 blend above).
        assert difference[0] == 0 and difference[-1] > 0
    else:
        # Decoded, every latent speaks to the whole grid.
        assert (difference > 0).all()

    output = model.train()(codes)
    expected = output.nll_loss + model.config.auxiliary_loss_weight * output.auxiliary_loss + model.config.commitment_cost * output.commitment_loss
    assert output.loss.shape == () and torch.isclose(output.loss, expected)
    output.loss.backward()
    for name in ("encoder.to_latents.weight", "encoder.conv_in.weight", "encoder.code_embedding.weight", "conditioning_network.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_the_auxiliary_loss_alone_trains_the_encoder():
    """The auxiliary head reads the conditioning map alone: with the decoder's loss left out, its gradient still
    reaches the encoder, and without the head there is no auxiliary loss."""
    model = tiny_stage2()
    codes = torch.randint(0, 16, (6, 4, 4))
    output = model.eval()(codes)
    torch.testing.assert_close(output.auxiliary_loss, torch.nn.functional.cross_entropy(
        model.auxiliary_head(model.conditioning_map(model.quantizer.lookup(output.latent_indices))), codes
    ))
    model.train()(codes).auxiliary_loss.backward()
    assert model.encoder.to_latents.weight.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in model.decoder.parameters())
    without = tiny_stage2(auxiliary_loss_weight=0.0)
    assert without.auxiliary_head is None and without(codes).auxiliary_loss is None


def test_the_auxiliary_loss_warmup_falls_linearly_to_zero_and_sets_the_loss():
    """`auxiliary_loss_warmup_fraction`: the weight falls linearly from `auxiliary_loss_weight` at the first update
    to 0 at that fraction of the updates and stays there; unset, it is constant. `forward` weighs the auxiliary loss
    by the weight it is given."""
    config = HierarchicalVQVAEConfig(**TINY_STAGE2, auxiliary_loss_weight=2.0, auxiliary_loss_warmup_fraction=0.5)
    weights = [config.auxiliary_loss_weight_at(step, 10) for step in range(10)]
    assert weights == pytest.approx([2.0, 1.6, 1.2, 0.8, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0])
    constant = HierarchicalVQVAEConfig(**TINY_STAGE2, auxiliary_loss_weight=2.0)
    assert constant.auxiliary_loss_warmup_fraction is None
    assert [constant.auxiliary_loss_weight_at(step, 10) for step in (0, 5, 9)] == [2.0, 2.0, 2.0]

    model = HierarchicalVQVAEModel(config).train()
    codes = torch.randint(0, 16, (6, 4, 4))
    for weight in (0.3, 0.0):
        output = model(codes, auxiliary_loss_weight=weight)
        expected = output.nll_loss + weight * output.auxiliary_loss + config.commitment_cost * output.commitment_loss
        torch.testing.assert_close(output.loss, expected)
    # Without a weight, forward uses the config's.
    output = model(codes)
    torch.testing.assert_close(output.loss, output.nll_loss + 2.0 * output.auxiliary_loss + config.commitment_cost * output.commitment_loss)

    for bad in (0, 1.5, -0.2, "half", float("nan")):
        with pytest.raises(ValueError, match=rf"auxiliary_loss_warmup_fraction must be a finite number in \(0, 1\], got {bad!r}"):
            HierarchicalVQVAEConfig(auxiliary_loss_warmup_fraction=bad)


def test_a_folder_saved_before_the_decoded_conditioning_loads_as_it_was(tmp_path):
    """Configs saved before `conditioning`, `conditioning_num_layers`, `auxiliary_loss_weight` and
    `auxiliary_loss_warmup_fraction` existed mean a conditioning map upsampled from the latents through one 3x3
    convolution, and no auxiliary head."""
    earlier = tiny_stage2(conditioning="upsampled", conditioning_num_layers=1, auxiliary_loss_weight=0.0).eval()
    earlier.save_pretrained(tmp_path / "stage2")
    config_path = tmp_path / "stage2" / "config.json"
    saved = json.loads(config_path.read_text())
    for name in ("conditioning", "conditioning_num_layers", "auxiliary_loss_weight", "auxiliary_loss_warmup_fraction"):
        del saved[name]
    config_path.write_text(json.dumps(saved))
    loaded = HierarchicalVQVAEModel.from_pretrained(tmp_path / "stage2")
    assert (loaded.config.conditioning, loaded.config.conditioning_num_layers, loaded.config.auxiliary_loss_weight) == ("upsampled", 1, 0.0)
    assert loaded.config.auxiliary_loss_warmup_fraction is None
    assert set(loaded.state_dict()) == set(earlier.state_dict())
    codes = torch.randint(0, 16, (2, 4, 4))
    torch.testing.assert_close(loaded.bits_per_grid(codes), earlier.bits_per_grid(codes))
    # A config made today gets today's defaults.
    assert HierarchicalVQVAEConfig().conditioning == "decoded" and HierarchicalVQVAEConfig().auxiliary_loss_weight > 0


@pytest.mark.parametrize("batch_size", [1, 4])
def test_cached_sampling_equals_plain_sampling_and_follows_the_latents(batch_size, sampler_step):
    model = tiny_stage2(input_grid_height=5, input_grid_width=6, decoder_kernel_size=5).eval()
    latents = torch.randint(0, 8, (batch_size, 3, 1), generator=seeded(batch_size))
    cached = model.sample(latents, generator=seeded(3))
    plain = model.sample(latents, generator=seeded(3), use_cache=False)
    assert cached.shape == (batch_size, 5, 6) and torch.equal(cached, plain)
    # An untrained decoder barely listens to its latents: amplify the conditioning map so that other latents
    # move the logits by more than the gap between CDF boundaries.
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.conditioning_projection.weight.mul_(50)
    cached = model.sample(latents, generator=seeded(3))
    assert torch.equal(cached, model.sample(latents, generator=seeded(3), use_cache=False))
    assert not torch.equal(model.sample((latents + 1) % 8, generator=seeded(3)), cached)


def test_bits_per_grid_is_the_sum_of_the_nll():
    model = tiny_stage2().eval()
    codes = torch.randint(0, 16, (4, 4, 4))
    output = model(codes)
    bits = model.bits_per_grid(codes)
    torch.testing.assert_close(bits.mean(), output.nll_loss * 16 / np.log(2), rtol=1e-5, atol=1e-5)


def test_save_load_strict_and_auto_classes(tmp_path):
    model = tiny_stage2().eval()
    model.save_pretrained(tmp_path / "stage2")
    assert AutoConfig.from_pretrained(tmp_path / "stage2").model_type == "hf_vqvae_hierarchical_vqvae"
    loaded = AutoModel.from_pretrained(tmp_path / "stage2")
    assert isinstance(loaded, HierarchicalVQVAEModel)
    for (name, ours), theirs in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(ours, theirs), name
    codes = torch.randint(0, 16, (2, 4, 4))
    torch.testing.assert_close(loaded.bits_per_grid(codes), model.bits_per_grid(codes))
    with pytest.raises(CheckpointMismatchError, match="does not match the HierarchicalVQVAEConfig"):
        HierarchicalVQVAEModel.from_pretrained(tmp_path / "stage2", decoder_num_layers=4)


def test_pipeline_generates_reproducibly_in_every_output_type(pipeline):
    pil = pipeline(batch_size=3, generator=seeded())
    assert len(pil.images) == 3 and pil.images[0].size == (16, 16) and isinstance(pil.images[0], PIL.Image.Image)
    assert pil.codes.shape == (3, 4, 4) and pil.latent_codes.shape == (3, 3, 1)
    as_np = pipeline(batch_size=3, generator=seeded(), output_type="np")
    assert torch.equal(as_np.codes, pil.codes) and as_np.images.shape == (3, 16, 16, 3)
    as_pt = pipeline(batch_size=3, generator=seeded(), output_type="pt")
    torch.testing.assert_close(as_pt.images, (pipeline.vqvae.decode(pil.codes).reconstruction / 2 + 0.5).clamp(0, 1))
    latent = pipeline(batch_size=3, generator=seeded(), output_type="latent")
    assert torch.equal(latent.images, pil.codes)
    # The stage-1 codes are those the stage-2 decoder samples given the prior's stage-2 codes.
    generator = seeded()
    top = pipeline.prior.sample(3, generator=generator)
    assert torch.equal(top, pil.latent_codes) and torch.equal(pipeline.stage2.sample(top, generator=generator), pil.codes)
    assert not torch.equal(pipeline(batch_size=3, generator=seeded(1), output_type="latent").images, pil.codes)


def test_pipeline_reconstructs_frames_through_both_stages(pipeline):
    frames = torch.rand(2, 3, 16, 16) * 2 - 1
    out = pipeline(image=frames, generator=seeded(), output_type="pt")
    stage1 = pipeline.vqvae.encode(frames).indices
    assert torch.equal(out.latent_codes, pipeline.stage2.encode(stage1).indices)
    assert torch.equal(out.codes, pipeline.stage2.sample(out.latent_codes, generator=seeded()))
    pil_frames = [PIL.Image.fromarray(np.full((20, 20, 3), 90, np.uint8))]
    assert pipeline(image=pil_frames, output_type="latent").latent_codes.shape == (1, 3, 1)


def test_pipeline_save_load_push_and_hub_id(tmp_path, offline_hub, recorded_uploads, pipeline):
    folder = tmp_path / "pipeline"
    pipeline.save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["stage2"] == ["hf_vqvae_entry", "HierarchicalVQVAEModel"]  # the entry of diffusers' generic loader
    index = HierarchicalVQVAEPipeline.load_config(folder)  # which the package reads as the defining module
    assert index["stage2"] == ["hf_vqvae.models.hierarchical_vqvae.modeling_hierarchical_vqvae", "HierarchicalVQVAEModel"]
    put_in_hub_cache(offline_hub, "org/hierarchy", folder)
    by_id = HierarchicalVQVAEPipeline.from_pretrained("org/hierarchy")
    expected = pipeline(batch_size=2, generator=seeded(), output_type="np").images
    np.testing.assert_array_equal(by_id(batch_size=2, generator=seeded(), output_type="np").images, expected)

    pipeline.push_to_hub("org/hierarchy", token="hf_test", dataset_name="frames")
    files = recorded_uploads[-1]["files"]
    assert {"model_index.json", "stage2/config.json", "stage2/model.safetensors", "prior/model.safetensors", "vqvae/model.safetensors"} <= set(files)
    card = files["README.md"].decode()
    assert "HierarchicalVQVAEPipeline.from_pretrained(\"org/hierarchy\")" in card and "3x1 stage-2 codes" in card.replace("\n", " ")

    pipeline.stage2.push_to_hub("org/stage2", token="hf_test")
    card = recorded_uploads[-1]["files"]["README.md"].decode()
    assert "HierarchicalVQVAEModel.from_pretrained(\"org/stage2\")" in card and "`decoder_num_layers` | `3`" in card


def test_bad_inputs_name_the_problem(tiny_model, pipeline):
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(**TINY_TOP_PRIOR))
    with pytest.raises(ValueError, match=r"input_num_embeddings=32, but the stage-1 VQ-VAE's codebook has 16 codes"):
        HierarchicalVQVAEPipeline(tiny_model, tiny_stage2(input_num_embeddings=32), prior)
    with pytest.raises(ValueError, match=r"takes 8x8 code grids .* the stage-1 VQ-VAE's latent grid is 4x4"):
        HierarchicalVQVAEPipeline(tiny_model, tiny_stage2(input_grid_height=8, input_grid_width=8), prior)
    with pytest.raises(ValueError, match=r"top prior does not fit the stage-2 model: the prior models 2x1 code grids"):
        HierarchicalVQVAEPipeline(tiny_model, tiny_stage2(), PixelCNNPriorModel(PixelCNNPriorConfig(**{**TINY_TOP_PRIOR, "grid_height": 2})))
    with pytest.raises(ValueError, match=r"top prior does not fit .* num_embeddings=16 but the VQ-VAE's codebook has 8"):
        HierarchicalVQVAEPipeline(tiny_model, tiny_stage2(), PixelCNNPriorModel(PixelCNNPriorConfig(**{**TINY_TOP_PRIOR, "num_embeddings": 16})))

    with pytest.raises(ValueError, match=r"frames must be 16x16, the stage-1 VQ-VAE's sample_size"):
        pipeline(image=torch.rand(1, 3, 32, 32))
    stage2 = pipeline.stage2
    with pytest.raises(ValueError, match=r"`input_ids` must hold codes in \[0, 16\) \(input_num_embeddings\), got values in \[16, 16\]"):
        stage2(torch.full((1, 4, 4), 16))
    with pytest.raises(ValueError, match=r"`input_ids` must have shape \(batch_size, 4, 4\) \(the stage-1 grid\), got \(1, 5, 4\)"):
        stage2.encode(torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`latent_indices` must hold codes in \[0, 8\)"):
        stage2.sample(torch.full((1, 3, 1), 8))
    with pytest.raises(ValueError, match=r"`input_ids` must be an integer tensor"):
        stage2(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"decoder_kernel_size must be an odd integer >= 3, got 4"):
        HierarchicalVQVAEConfig(decoder_kernel_size=4)
    with pytest.raises(ValueError, match=r"encoder_num_downsamples=5 shrinks the 21x21 input grid to nothing"):
        HierarchicalVQVAEConfig(encoder_num_downsamples=5)
    with pytest.raises(ValueError, match=r"output_type must be one of"):
        pipeline(output_type="gif")


def test_dmlab_defaults_fit_the_dmlab84_vqvae_and_a_3x1_prior():
    vqvae_config = VQVAEConfig.from_preset("dmlab84")
    config = HierarchicalVQVAEConfig()
    assert (config.input_num_embeddings, config.input_grid) == (vqvae_config.num_embeddings, (vqvae_config.latent_size,) * 2)
    assert config.latent_grid == (3, 1) and config.num_embeddings == 512
    # The existing PixelCNN prior models a 3x1 grid: causal, and cached sampling equals plain sampling.
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(**{**TINY_TOP_PRIOR, "kernel_size": 5})).eval()
    codes = torch.randint(0, 8, (4, 3, 1))
    logits = prior(codes).logits
    changed = codes.clone()
    changed[:, 1:] = (changed[:, 1:] + 1) % 8
    torch.testing.assert_close(prior(changed).logits[:, :, :2], logits[:, :, :2], rtol=0, atol=1e-6)
    assert torch.equal(prior.sample(4, generator=seeded()), prior.sample(4, generator=seeded(), use_cache=False))


def test_batch_mismatches_and_empty_batches_are_errors_named_as_such():
    model = tiny_stage2().eval()
    codes = torch.randint(0, 16, (2, 4, 4))
    latents = model.encode(codes).indices
    mismatch = r"batch size mismatch: `latent_indices` has batch size 1 but `input_ids` has 2"
    with pytest.raises(ValueError, match=mismatch):
        model.bits_per_grid(codes, latents[:1])  # would score grid 2 with grid 1's latents
    with pytest.raises(ValueError, match=mismatch):
        model.decode_logits(codes, latents[:1])
    with pytest.raises(ValueError, match=r"batch size mismatch: `labels` has batch size 1 but `input_ids` has 2"):
        model(codes, labels=codes[:1])
    torch.testing.assert_close(model.bits_per_grid(codes[:1], latents[:1]), model.bits_per_grid(codes, latents)[:1])

    empty = torch.zeros(0, 4, 4, dtype=torch.long)
    for call in (model, model.encode, model.bits_per_grid, lambda codes: model(torch.zeros(1, 4, 4, dtype=torch.long), labels=codes)):
        with pytest.raises(ValueError, match=r"empty batch: `(input_ids|labels)` holds no code grids \(batch size 0\)"):
            call(empty)
    with pytest.raises(ValueError, match=r"empty batch: `latent_indices` holds no code grids"):
        model.sample(torch.zeros(0, 3, 1, dtype=torch.long))


@pytest.mark.parametrize("temperature", [1e-45, 1e-4, 0.0, math.inf])
def test_sampling_refuses_temperatures_below_the_shared_minimum(temperature):
    model = tiny_stage2().eval()
    latents = torch.randint(0, 8, (2, 3, 1))
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0.001"):
        model.sample(latents, temperature=temperature)
    # At the smallest temperature allowed the two samplers still agree.
    cached = model.sample(latents, temperature=1e-3, generator=seeded())
    assert torch.equal(cached, model.sample(latents, temperature=1e-3, generator=seeded(), use_cache=False))


def test_forward_returns_encoder_and_decoder_hidden_states_by_argument_or_config():
    model = tiny_stage2().eval()
    codes = torch.randint(0, 16, (2, 4, 4))
    plain = model(codes)
    assert plain.encoder_hidden_states is None and plain.decoder_hidden_states is None
    output = model(codes, output_hidden_states=True)
    # The embedded codes, the 3x3 convolution, one downsampling, then z_e.
    shapes = [tuple(state.shape) for state in output.encoder_hidden_states]
    assert shapes == [(2, 4, 4, 4), (2, 8, 4, 4), (2, 8, 2, 2), (2, 4, 3, 1)]
    torch.testing.assert_close(output.encoder_hidden_states[-1], model.encode(codes).latents)
    # The decoder's embedded codes and its 3 gated layers.
    assert len(output.decoder_hidden_states) == 4 and all(state.shape == (2, 8, 4, 4) for state in output.decoder_hidden_states)
    torch.testing.assert_close(output.decoder_hidden_states[0], model.get_input_embeddings()(codes).permute(0, 3, 1, 2))
    torch.testing.assert_close(output.logits, plain.logits)
    assert_gradients_reach(output.encoder_hidden_states + output.decoder_hidden_states, output.loss)
    flagged = tiny_stage2(output_hidden_states=True).eval()
    assert len(flagged(codes).decoder_hidden_states) == 4
    assert len(flagged(codes, return_dict=False)) == len(model(codes, return_dict=False)) + 2


def test_input_embeddings_are_the_decoders_code_embedding_and_cannot_be_resized():
    model = tiny_stage2().eval()
    assert_input_embeddings_are(model, model.decoder.code_embedding, dict(input_ids=torch.randint(0, 16, (2, 4, 4))))
    with pytest.raises(ValueError, match=r"input_num_embeddings, also the number of logits"):
        model.resize_token_embeddings(32)


def test_exports_with_torch_export_and_the_exported_program_matches_eager():
    model = tiny_stage2().eval()
    assert_export_matches_eager(model, dict(input_ids=torch.randint(0, 16, (2, 4, 4))), dict(input_ids=torch.randint(0, 16, (2, 4, 4))))
    with pytest.raises(ValueError, match=r"must hold codes in \[0, 16\)"):
        model(torch.full((2, 4, 4), 16))  # eager keeps its value checks


@pytest.mark.slow
def test_exports_to_onnx_and_onnxruntime_matches_eager(tmp_path):
    assert_onnx_export_matches_eager(tmp_path / "stage2.onnx", tiny_stage2().eval(), dict(input_ids=torch.randint(0, 16, (2, 4, 4))))


def template_grids(templates: torch.Tensor, count: int, generator: torch.Generator, noise: float = 0.1) -> torch.Tensor:
    """`count` grids, each one of `templates` with a share `noise` of its codes redrawn at random."""
    grids = templates[torch.randint(0, len(templates), (count,), generator=generator)].clone()
    redrawn = torch.rand(grids.shape, generator=generator) < noise
    grids[redrawn] = torch.randint(0, 16, (int(redrawn.sum()),), generator=generator)
    return grids


def test_a_trained_stage2_needs_its_own_latents_the_benchmarks_measure():
    """Grids made from 8 templates: once trained, the decoder predicts a held-out grid better with its own 3x1 codes
    than with another grid's, by more than half the codes' entropy (what benchmarks/hierarchy.py reports)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from hierarchy import derangement, latent_information, plug_in_entropy

    generator = seeded(0)
    torch.manual_seed(0)
    templates = torch.randint(0, 16, (8, 6, 6), generator=generator)
    model = tiny_stage2(
        input_grid_height=6, input_grid_width=6, input_embedding_dim=8, encoder_hidden_channels=16, embedding_dim=8,
        conditioning_channels=8, decoder_hidden_channels=16, decoder_num_layers=2, decoder_skip_channels=16,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model(template_grids(templates, 32, generator)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()

    held_out = template_grids(templates, 128, generator)
    other = derangement(len(held_out), seed=1)
    assert not bool((other == torch.arange(len(held_out))).any()) and sorted(other.tolist()) == list(range(len(held_out)))
    top_prior = PixelCNNPriorModel(PixelCNNPriorConfig(**TINY_TOP_PRIOR)).eval()
    baseline = PixelCNNPriorModel(PixelCNNPriorConfig(**{**TINY_TOP_PRIOR, "num_embeddings": 16, "grid_height": 6, "grid_width": 6})).eval()
    figures = latent_information(model, top_prior, baseline, held_out, seed=1)
    latents = model.encode(held_out).indices
    assert figures["own"] == pytest.approx(model.bits_per_grid(held_out, latents).mean().item(), rel=1e-5)
    assert figures["shuffled"] == pytest.approx(model.bits_per_grid(held_out, latents[other]).mean().item(), rel=1e-5)
    assert figures["latent_plug_in_entropy"] == pytest.approx(plug_in_entropy(latents)) and 1 < figures["latent_plug_in_entropy"] <= 3 * np.log2(8)
    assert figures["two_stage"] == pytest.approx(figures["own"] + figures["latent_cross_entropy"])
    assert figures["plain"] == pytest.approx(baseline.bits_per_code(held_out).mean().item() * 36, rel=1e-5)
    assert figures["difference"] > 0.5 * figures["latent_plug_in_entropy"], figures

"""Every model with every quantizer of the family: a Hub round trip through the offline cache, priors and pipelines
sampling over the codes, the training scripts through --config_overrides, and old configs loading as before."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, PreTrainedModel

from hf_vqvae import (
    AudioVQVAEConfig,
    AudioVQVAEModel,
    AudioVQVAEPipeline,
    HierarchicalVQVAEConfig,
    HierarchicalVQVAEModel,
    HierarchicalVQVAEPipeline,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    VQVAEConfig,
    VQVAEModel,
    VQVAEPipeline,
    VectorQuantizer,
)
from hf_vqvae.commands.extract_codes import extract_codes
from hf_vqvae.commands.extract_codes import parse_args as parse_extract_args
from hf_vqvae.data.codes import CodesInfo, load_codes
from hf_vqvae.quantization.factory import QUANTIZER_TYPES
from hf_vqvae.training.recipes.audio_vqvae import parse_args as parse_audio_args
from hf_vqvae.training.recipes.audio_vqvae import train_audio_vqvae
from hf_vqvae.training.recipes.prior import parse_args as parse_prior_args
from hf_vqvae.training.recipes.prior import train_prior
from hf_vqvae.training.recipes.vqvae import parse_args, train_vqvae

from conftest import TINY_VQVAE, put_in_hub_cache
from test_speech_data import speech_folder  # noqa: F401  (fixture)


FIXTURES = Path(__file__).with_name("fixtures")

# Each variant as --config_overrides would set it, for models whose K is 16 and whose D is 4.
VARIANTS = {
    "vq_rotation_trick": ["rotation_trick=true"],
    "vq_cosine_factorised": ["cosine_similarity=true", "codebook_dim=2"],
    "residual_vq": ["quantizer_type=residual_vq", "num_quantizers=3", "quantizer_dropout=0.5"],
    "simvq": ["quantizer_type=simvq", "rotation_trick=true"],
    "fsq": ["quantizer_type=fsq", "fsq_levels=4,3,3", "num_embeddings=36"],
    "lfq": ["quantizer_type=lfq"],
}
TINY_AUDIO = dict(
    hidden_channels=16, downsampling_strides=[2, 2], num_embeddings=16, embedding_dim=4, residual_channels=8,
    gate_channels=8, skip_channels=8, num_layers=4, dilation_cycle=2, conditioning_channels=4, num_speakers=2,
    speaker_names=["ann", "bob"],
)
TINY_STAGE2 = dict(
    input_num_embeddings=16, input_grid_height=4, input_grid_width=4, input_embedding_dim=4, encoder_hidden_channels=8,
    encoder_num_downsamples=1, num_embeddings=16, embedding_dim=4, conditioning_channels=4, decoder_hidden_channels=8,
    decoder_num_layers=2, decoder_kernel_size=3, decoder_skip_channels=8,
)
TINY_PRIOR = dict(hidden_channels=8, num_layers=2, kernel_size=3, skip_channels=8)


def variant_fields(name: str) -> dict:
    """The config fields of a variant, typed as the config holds them."""
    from hf_vqvae.training.autoencoders import parse_config_overrides

    return parse_config_overrides(VARIANTS[name])


def tiny_models(name: str) -> dict:
    fields = variant_fields(name)
    return {
        "image": VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, **fields})),
        "audio": AudioVQVAEModel(AudioVQVAEConfig(**{**TINY_AUDIO, **fields})),
        "hierarchy": HierarchicalVQVAEModel(HierarchicalVQVAEConfig(**{**TINY_STAGE2, **fields})),
    }


def model_inputs(kind: str) -> tuple:
    generator = torch.Generator().manual_seed(1)
    if kind == "image":
        return (torch.rand(4, 3, 16, 16, generator=generator) * 2 - 1,)
    if kind == "audio":
        return (torch.rand(4, 64, generator=generator) * 2 - 1, torch.tensor([0, 1, 0, 1]))
    return (torch.randint(0, 16, (4, 4, 4), generator=generator),)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_model_with_every_variant_survives_a_hub_round_trip(name, offline_hub, tmp_path):
    for kind, model in tiny_models(name).items():
        inputs = model_inputs(kind)
        model.train()
        for _ in range(3):  # k-means, EMA, usage and dropout counters hold non-default values
            model(*inputs).loss.backward()
        model.eval()
        folder = tmp_path / kind
        model.save_pretrained(folder)
        saved = json.loads((folder / "config.json").read_text())
        assert {key: saved[key] for key in variant_fields(name)} == variant_fields(name)
        put_in_hub_cache(offline_hub, f"org/{kind}-{name}", folder)

        loaded = AutoModel.from_pretrained(f"org/{kind}-{name}").eval()
        assert type(loaded) is type(model) and type(loaded.quantizer) is type(model.quantizer)
        state, loaded_state = model.state_dict(), loaded.state_dict()
        assert state.keys() == loaded_state.keys()
        for key in state:
            assert torch.equal(state[key], loaded_state[key]), (kind, key)
        # The same codes and, up to the last bits of matmuls on differently aligned memory, the same loss.
        expected, got = model(*inputs), loaded(*inputs)
        indices = "indices" if kind != "hierarchy" else "latent_indices"
        assert torch.equal(expected[indices], got[indices]), kind
        torch.testing.assert_close(expected.loss, got.loss)
        # A training step from the loaded state is the step the original takes.
        model.train(), loaded.train()
        torch.testing.assert_close(model(*inputs).loss, loaded(*inputs).loss)
        assert torch.equal(model.quantizer.usage_histogram, loaded.quantizer.usage_histogram), kind


@pytest.mark.parametrize("name", [*VARIANTS, "vq_kmeans"])
def test_init_weights_rebuilds_every_buffer_of_a_model_made_on_the_meta_device(name, monkeypatch):
    # transformers' contract (ModelTesterMixin.test_init_weights_can_init_buffers): from_pretrained makes a model on
    # the meta device and `_init_weights` fills what the checkpoint does not hold, so a buffer must come out of
    # `_init_weights` as it comes out of `__init__`: a constant, not a copy of a random codebook.
    fields = {"kmeans_init": True} if name == "vq_kmeans" else variant_fields(name)
    configs = {
        "image": (VQVAEModel, VQVAEConfig(**{**TINY_VQVAE, **fields})),
        "audio": (AudioVQVAEModel, AudioVQVAEConfig(**{**TINY_AUDIO, **fields})),
        "hierarchy": (HierarchicalVQVAEModel, HierarchicalVQVAEConfig(**{**TINY_STAGE2, **fields})),
    }
    for kind, (model_class, config) in configs.items():
        with monkeypatch.context() as patch:
            patch.setattr(PreTrainedModel, "_initialize_weights", lambda *args, **kwargs: None)
            from_init = model_class(config)
        with torch.device("meta"):
            from_meta = model_class(config)
        from_meta.to_empty(device="cpu")
        from_meta.init_weights()
        buffers, rebuilt = dict(from_init.named_buffers()), dict(from_meta.named_buffers())
        assert buffers.keys() == rebuilt.keys(), kind
        assert any(key.startswith("quantizer.") for key in buffers), kind
        for key, buffer in buffers.items():
            assert torch.equal(buffer, rebuilt[key]), (kind, key)


def test_ema_state_saved_before_buffers_were_constants_loads_and_trains_as_saved(tmp_path):
    # 0.2.0 saved a fresh model's EMA state seeded (m = e, initialized), a trained one's as it stood: loaded buffers are
    # the stored ones, and training goes on from them instead of seeding again (m = 2e with N = 3 tells them apart).
    model = VQVAEModel(VQVAEConfig(**TINY_VQVAE))
    with torch.no_grad():
        model.quantizer.embed_sum.copy_(model.quantizer.embedding * 2.0)
        model.quantizer.cluster_size.fill_(3.0)
        model.quantizer.initialized.fill_(True)
    model.save_pretrained(tmp_path)
    loaded = VQVAEModel.from_pretrained(tmp_path)
    state, loaded_state = model.state_dict(), loaded.state_dict()
    for key in state:
        assert torch.equal(state[key], loaded_state[key]), key
    stored = loaded.quantizer.embed_sum.clone()
    indices = loaded.train()(*model_inputs("image")).indices
    unused = torch.bincount(indices.flatten(), minlength=loaded.config.num_embeddings) == 0
    assert unused.any()
    decay = loaded.config.decay
    torch.testing.assert_close(loaded.quantizer.embed_sum[unused], decay * stored[unused])


@pytest.mark.parametrize("name", VARIANTS)
def test_a_bf16_model_keeps_every_variants_quantizer_in_fp32_and_its_integer_state(name, tmp_path):
    config = VQVAEConfig(**{**TINY_VQVAE, **variant_fields(name)})
    VQVAEModel(config).save_pretrained(tmp_path)
    for model in (VQVAEModel._from_config(config, dtype=torch.bfloat16), VQVAEModel.from_pretrained(tmp_path, dtype=torch.bfloat16)):
        assert model.encoder.conv_in.weight.dtype == torch.bfloat16
        for key, tensor in model.quantizer.state_dict().items():
            expected = {"initialized": torch.bool, "restart_step": torch.long, "dropout_step": torch.long}.get(key.split(".")[-1], torch.float32)
            assert tensor.dtype == expected, key
        out = model.train()(torch.rand(2, 3, 16, 16).bfloat16() * 2 - 1)
        assert out.reconstruction.dtype == torch.bfloat16 and torch.isfinite(out.loss)


@pytest.mark.parametrize("name", VARIANTS)
def test_priors_sample_over_every_variants_codes_and_the_pipelines_decode_them(name):
    models = tiny_models(name)
    vqvae, audio = models["image"].eval(), models["audio"].eval()
    classes, *grid = vqvae.config.prior_code_grid(4, 4)
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(num_embeddings=classes, grid_height=grid[0], grid_width=grid[1], **TINY_PRIOR))
    pipeline = VQVAEPipeline(vqvae=vqvae, prior=prior.eval())
    pipeline.set_progress_bar_config(disable=True)
    out = pipeline(batch_size=3, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.shape == (3, 3, 16, 16)
    assert vqvae.config.code_layout.to_prior_grid(out.codes).shape == (3, *grid)
    assert torch.equal(vqvae.decode(out.codes).reconstruction.clamp(-1, 1).add(1).div(2), out.images)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(pipeline(image=images, output_type="latent").codes, vqvae.encode(images).indices)

    audio_classes, _, width = audio.config.prior_code_grid(1, 8)
    audio_prior = PixelCNNPriorModel(PixelCNNPriorConfig(num_embeddings=audio_classes, grid_height=1, grid_width=width, **TINY_PRIOR))
    audio_pipeline = AudioVQVAEPipeline(vqvae=audio, prior=audio_prior.eval())
    audio_pipeline.set_progress_bar_config(disable=True)
    assert audio_pipeline(batch_size=2, speaker="bob", generator=torch.Generator().manual_seed(0)).audios.shape == (2, 32)


@pytest.mark.parametrize("name", ["residual_vq", "fsq"])
def test_the_hierarchy_stacks_variants_on_both_stages(name, tiny_model):
    fields = variant_fields(name)
    vqvae = VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, **fields})).eval()
    stage1_classes, *stage1_grid = vqvae.config.prior_code_grid(4, 4)
    stage2_fields = {**TINY_STAGE2, **fields, "input_num_embeddings": stage1_classes, "input_grid_height": stage1_grid[0], "input_grid_width": stage1_grid[1]}
    stage2 = HierarchicalVQVAEModel(HierarchicalVQVAEConfig(**stage2_fields)).eval()
    classes, *grid = stage2.config.prior_code_grid(*stage2.config.latent_grid)
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(num_embeddings=classes, grid_height=grid[0], grid_width=grid[1], **TINY_PRIOR)).eval()
    pipeline = HierarchicalVQVAEPipeline(vqvae=vqvae, stage2=stage2, prior=prior)
    pipeline.set_progress_bar_config(disable=True)
    out = pipeline(batch_size=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.shape == (2, 3, 16, 16)
    assert torch.equal(out.codes, vqvae.config.code_layout.from_prior_grid(vqvae.config.code_layout.to_prior_grid(out.codes)))
    reconstructed = pipeline(image=torch.rand(2, 3, 16, 16) * 2 - 1, output_type="latent")
    assert reconstructed.latent_codes.shape[-2:] == tuple(stage2.config.latent_grid)


def test_residual_codes_choose_the_bitrate_by_the_stages_decoded():
    config = AudioVQVAEConfig(**{**TINY_AUDIO, **variant_fields("residual_vq")})
    model = AudioVQVAEModel(config).eval()
    assert config.bits_per_second == 3 * 16000 / 4 * 4  # 3 stages of log2(16) bits at 4000 latents per second
    codes = model.encode(torch.rand(1, 64) * 2 - 1).indices
    assert codes.shape == (1, 3, 16)
    for stages in (1, 2, 3):
        generator = torch.Generator().manual_seed(0)
        assert model.decode(codes[:, :stages], "ann", generator=generator).audio_values.shape == (1, 64)
    with pytest.raises(ValueError, match=r"codes must be an integer tensor of shape \(batch, stages, latents\)"):
        model.decode(codes[:, 0], "ann")
    with pytest.raises(ValueError, match=r"1 <= stages <= 3"):
        model.decode(torch.cat([codes, codes[:, :1]], dim=1), "ann")
    image_model = VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, **variant_fields("residual_vq")})).eval()
    with pytest.raises(ValueError, match=r"indices must be a tensor of shape \(batch, stages, height, width\)"):
        image_model.decode(torch.zeros(1, 4, 4, dtype=torch.long))


def test_a_config_saved_before_the_variants_builds_the_papers_quantizer_as_before():
    folder = FIXTURES / "pipeline_saved_by_0.1.0" / "vqvae"
    stored = json.loads((folder / "config.json").read_text())
    assert "quantizer_type" not in stored and "rotation_trick" not in stored
    model = VQVAEModel.from_pretrained(folder)
    quantizer = model.quantizer
    assert type(quantizer) is VectorQuantizer and model.config.quantizer_type == "vq"
    assert (quantizer.rotation_trick, quantizer.cosine_similarity, quantizer.codebook_dim) == (False, False, stored["embedding_dim"])
    assert quantizer.project_in is None and quantizer.project_out is None
    assert set(quantizer.state_dict()) == {"embedding", "cluster_size", "embed_sum", "initialized", "restart_step", "codes_used"}


# ------------------------------------------------------------------------------------------------ training scripts


def image_flags(output_dir, image_folder, overrides: list[str], *extra: str) -> list[str]:
    tiny = [f"{name}={value}" for name, value in TINY_VQVAE.items() if name != "sample_size"]
    return [
        "--train_data_dir", str(image_folder), "--cache_dir", str(Path(output_dir).parent / "datasets-cache"),
        "--output_dir", str(output_dir), "--resolution", "16", "--train_batch_size", "4", "--validation_fraction", "0.2",
        "--report_to", "none", "--max_train_steps", "2", "--config_overrides", *tiny, *overrides, *extra,
    ]


@pytest.mark.usefixtures("fresh_accelerate_state")
@pytest.mark.parametrize("name", VARIANTS)
def test_train_py_trains_every_variant_through_config_overrides(name, tmp_path, image_folder):
    metrics = train_vqvae(parse_args(image_flags(tmp_path / "run", image_folder, VARIANTS[name])))
    assert metrics["train_steps"] == 2 and metrics["validation_codes_used"] >= 1
    model = VQVAEModel.from_pretrained(tmp_path / "run")
    assert {key: getattr(model.config, key) for key in variant_fields(name)} == variant_fields(name)


@pytest.mark.usefixtures("fresh_accelerate_state")
@pytest.mark.parametrize("name", VARIANTS)
def test_train_audio_py_trains_every_variant_through_config_overrides(name, tmp_path, speech_folder):  # noqa: F811
    tiny = ["hidden_channels=16", "num_embeddings=16", "embedding_dim=4", "residual_channels=8", "gate_channels=8",
            "skip_channels=8", "num_layers=4", "dilation_cycle=4", "conditioning_channels=4"]
    metrics = train_audio_vqvae(parse_audio_args([
        "--train_data_dir", str(speech_folder), "--output_dir", str(tmp_path / "run"), "--segment_length", "256",
        "--downsampling_strides", "2", "2", "--train_batch_size", "4", "--validation_fraction", "0.25",
        "--audio_sample_seconds", "0.004", "--report_to", "none", "--max_train_steps", "2", "--max_unreadable_fraction", "0.2",
        "--config_overrides", *tiny, *VARIANTS[name],
    ]))
    assert metrics["train_steps"] == 2
    model = AudioVQVAEModel.from_pretrained(tmp_path / "run")
    assert {key: getattr(model.config, key) for key in variant_fields(name)} == variant_fields(name)


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_residual_codes_go_from_train_py_through_extract_codes_to_a_prior_and_its_pipeline(tmp_path, image_folder):
    train_vqvae(parse_args(image_flags(tmp_path / "vqvae", image_folder, VARIANTS["residual_vq"])))
    codes_dir = tmp_path / "codes"
    extract_codes(parse_extract_args([
        "--vqvae", str(tmp_path / "vqvae"), "--train_data_dir", str(image_folder), "--output_dir", str(codes_dir),
        "--cache_dir", str(tmp_path / "datasets-cache"), "--validation_fraction", "0.2",
    ]))
    splits, info = load_codes(str(codes_dir))
    # 4x4 grids of 3 stages of K = 16: one row of 12 tokens per grid row, 48 classes.
    assert (info.num_embeddings, info.grid_height, info.grid_width) == (48, 4, 12)
    vqvae = VQVAEModel.from_pretrained(tmp_path / "vqvae").eval()
    first = torch.tensor(splits["train"][0]["codes"])
    assert first.shape == (4, 12)
    assert CodesInfo.of_vqvae(vqvae.config, "v", "d") == CodesInfo("v", 48, 4, 12, "d")

    train_prior(parse_prior_args([
        "--codes_dataset", str(codes_dir), "--output_dir", str(tmp_path / "prior"), "--train_batch_size", "4",
        "--report_to", "none", "--max_train_steps", "2", "--sample_images_per_row", "2", "--sample_rows", "1",
        "--hidden_channels", "8", "--num_layers", "2", "--kernel_size", "3", "--skip_channels", "8", "--unconditional",
    ]))
    pipeline = VQVAEPipeline.from_pretrained(tmp_path / "prior" / "pipeline")
    pipeline.set_progress_bar_config(disable=True)
    out = pipeline(batch_size=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.codes.shape == (2, 3, 4, 4) and out.images.shape == (2, 3, 16, 16)


def test_every_quantizer_type_has_a_variant_here():
    types = {variant_fields(name).get("quantizer_type", "vq") for name in VARIANTS}
    assert types == set(QUANTIZER_TYPES)


def test_a_training_checkpoint_of_0_2_0_resumes_with_the_papers_quantizer_only(tmp_path):
    from safetensors.torch import save_file

    from hf_vqvae.configuration_utils import PAPER_QUANTIZER_FIELDS, QUANTIZER_FIELDS
    from hf_vqvae.training.checkpoints import CheckpointManager, IncompatibleCheckpointError, model_fields

    config = model_fields(VQVAEConfig(**TINY_VQVAE))
    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    # hf-vqvae 0.2.0 recorded the paper's quantizer fields only.
    written = {name: value for name, value in config.items() if name not in QUANTIZER_FIELDS or name in PAPER_QUANTIZER_FIELDS}
    assert "quantizer_type" not in written and "rotation_trick" not in written
    (checkpoint / CheckpointManager.state_file).write_text(json.dumps({"position": {"step": 2}, "model_config": written}))
    save_file({"weight": torch.zeros(1)}, checkpoint / "model.safetensors")
    manager = CheckpointManager(tmp_path)
    assert manager.resolve("latest", config)[0] == checkpoint
    with pytest.raises(IncompatibleCheckpointError, match="rotation_trick: checkpoint False, this run True"):
        manager.resolve("latest", {**config, "rotation_trick": True})

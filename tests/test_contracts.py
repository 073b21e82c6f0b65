"""The contracts transformers' and diffusers' own models and pipelines meet (dtypes, loading escape hatches,
hidden states, embeddings, gradient checkpointing, export, per-image generators, optional components), and
bad input, damaged files and missing folders met with errors that say what is wrong."""

import io
import json
import math
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file, save_file

from diffusers import DiffusionPipeline
from hf_vqvae import (
    AudioVQVAEConfig,
    AudioVQVAEFeatureExtractor,
    AudioVQVAEModel,
    AudioVQVAEPipeline,
    CheckpointMismatchError,
    HierarchicalVQVAEConfig,
    HierarchicalVQVAEModel,
    HierarchicalVQVAEPipeline,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    VectorQuantizer,
    VideoPredictionPipeline,
    VideoPriorConfig,
    VideoPriorModel,
    VQVAEConfig,
    VQVAEImageProcessor,
    VQVAEModel,
    VQVAEPipeline,
)
from hf_vqvae.data.codes import CodesInfo
from hf_vqvae.data.images import decode_image
from hf_vqvae.models.auto import load_vqvae

from conftest import TINY_VQVAE, put_in_hub_cache


def tiny_prior(**overrides) -> PixelCNNPriorModel:
    fields = dict(
        num_embeddings=16, grid_height=4, grid_width=4, hidden_channels=8, num_layers=2, kernel_size=3, skip_channels=8
    )
    return PixelCNNPriorModel(PixelCNNPriorConfig(**{**fields, **overrides})).eval()


def images(batch_size: int = 2) -> torch.Tensor:
    return torch.rand(batch_size, 3, 16, 16) * 2 - 1


def quantizer_dtypes(model: VQVAEModel) -> dict:
    return {name: tensor.dtype for name, tensor in model.quantizer.state_dict().items()}


FP32_QUANTIZER = {
    "embedding": torch.float32, "cluster_size": torch.float32, "embed_sum": torch.float32,
    "initialized": torch.bool, "restart_step": torch.long, "codes_used": torch.float32,
}


# ------------------------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_quantizer_stays_fp32_and_its_integer_state_survives_every_dtype(tmp_path, dtype):
    built = VQVAEModel._from_config(VQVAEConfig(**TINY_VQVAE), dtype=dtype)
    assert built.encoder.conv_in.weight.dtype == dtype and quantizer_dtypes(built) == FP32_QUANTIZER

    trained = VQVAEModel(VQVAEConfig(**TINY_VQVAE)).train()
    trained(images(4)).loss.backward()  # k-means ran, a restart step was counted
    trained.save_pretrained(tmp_path)
    loaded = VQVAEModel.from_pretrained(tmp_path, dtype=dtype)
    assert loaded.decoder.conv_in.weight.dtype == dtype and quantizer_dtypes(loaded) == FP32_QUANTIZER
    assert bool(loaded.quantizer.initialized) and int(loaded.quantizer.restart_step) == 1
    torch.testing.assert_close(loaded.quantizer.embedding, trained.quantizer.embedding)

    # Fine-tuning runs the restart hash (integer arithmetic on restart_step) and EMA updates in fp32.
    loaded.train()
    loss = loaded(images(4)).loss
    loss.backward()
    assert torch.isfinite(loss) and int(loaded.quantizer.restart_step) == 2
    assert quantizer_dtypes(loaded) == FP32_QUANTIZER


# ------------------------------------------------------------------------------------------------ loading


def test_loading_info_and_ignore_mismatched_sizes_keep_their_transformers_meaning(tmp_path):
    model = VQVAEModel(VQVAEConfig(**TINY_VQVAE))
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["decoder.conv_in.bias"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})

    with pytest.raises(CheckpointMismatchError, match="decoder.conv_in.bias: missing from the checkpoint"):
        VQVAEModel.from_pretrained(tmp_path)
    with pytest.raises(CheckpointMismatchError, match="decoder.conv_in.bias: missing"):
        VQVAEModel.from_pretrained(tmp_path, ignore_mismatched_sizes=True)  # re-initialises mis-shaped weights only
    loaded, info = VQVAEModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {"decoder.conv_in.bias"} and not info["mismatched_keys"]
    torch.testing.assert_close(loaded.encoder.conv_in.weight, model.encoder.conv_in.weight)

    model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"quantizer.embedding: checkpoint has shape \(16, 4\), the config gives \(32, 4\)"):
        VQVAEModel.from_pretrained(tmp_path, num_embeddings=32)
    resized, info = VQVAEModel.from_pretrained(tmp_path, num_embeddings=32, ignore_mismatched_sizes=True, output_loading_info=True)
    assert resized.quantizer.embedding.shape == (32, 4)
    assert {name for name, _, _ in info["mismatched_keys"]} >= {"quantizer.embedding", "quantizer.embed_sum"}
    torch.testing.assert_close(resized.encoder.conv_in.weight, model.encoder.conv_in.weight)


# ------------------------------------------------------------------------------------------------ outputs


def test_vqvae_returns_encoder_and_decoder_hidden_states_by_argument_or_config(tiny_model):
    pixel_values = images()
    tiny_model.eval()
    assert tiny_model(pixel_values).encoder_hidden_states is None
    out = tiny_model(pixel_values, output_hidden_states=True)
    # 2 downsamplings, conv_in, 1 residual block + the stack's ReLU, z_e; conv_in, block, ReLU, 2 upsamplings.
    assert len(out.encoder_hidden_states) == 6 and len(out.decoder_hidden_states) == 5
    assert out.encoder_hidden_states[0].shape == (2, 16, 8, 8)
    torch.testing.assert_close(out.encoder_hidden_states[-1], tiny_model.encode(pixel_values).latents)
    torch.testing.assert_close(out.decoder_hidden_states[-1], out.reconstruction)

    flagged = VQVAEModel(VQVAEConfig(**TINY_VQVAE, output_hidden_states=True)).eval()
    as_tuple = flagged(pixel_values, return_dict=False)
    assert len(flagged(pixel_values).encoder_hidden_states) == 6 and len(as_tuple) == 9


def assert_gradients_reach(hidden_states: tuple, output: torch.Tensor) -> None:
    """Every hidden state is a tensor `output` is computed from, not a copy: after a backward pass from it each has
    a gradient (transformers' contract, which `retain_grad` on returned hidden states relies on)."""
    for state in hidden_states:
        state.retain_grad()
    output.backward()
    assert all(state.grad is not None for state in hidden_states)


def test_prior_returns_the_embedding_and_every_layer_output_by_argument_or_config():
    prior = tiny_prior()
    codes = torch.randint(0, 16, (2, 4, 4))
    assert prior(codes).hidden_states is None
    out = prior(codes, output_hidden_states=True)
    assert len(out.hidden_states) == 3 and all(state.shape == (2, 8, 4, 4) for state in out.hidden_states)
    torch.testing.assert_close(out.hidden_states[0], prior.get_input_embeddings()(codes).permute(0, 3, 1, 2))
    flagged = tiny_prior(output_hidden_states=True)
    assert len(flagged(codes).hidden_states) == 3


# ------------------------------------------------------------------------------------------------ embeddings, checkpointing


def assert_input_embeddings_are(model, embedding: torch.nn.Embedding, inputs: dict) -> None:
    """`model.get_input_embeddings()` is `embedding`, the one its logits are computed from: with every weight frozen,
    `enable_input_require_grads()` (PEFT's hook) makes the logits require gradients, and `set_input_embeddings`
    puts a replacement in its place. Shared by every model's embedding test."""
    assert model.get_input_embeddings() is embedding
    model.requires_grad_(False)
    assert not model(**inputs).logits.requires_grad
    model.enable_input_require_grads()
    assert model(**inputs).logits.requires_grad

    replacement = torch.nn.Embedding(*embedding.weight.shape)
    before = model(**inputs).logits
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement and not torch.allclose(model(**inputs).logits, before)


def test_prior_input_embeddings_feed_peft_style_input_gradients():
    prior = tiny_prior()
    assert_input_embeddings_are(prior, prior.pixelcnn.code_embedding, dict(input_ids=torch.randint(0, 16, (2, 4, 4))))


def counted_forwards(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


def gradients(model) -> dict:
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


@pytest.mark.parametrize("kind", ["vqvae", "prior"])
def test_gradient_checkpointing_recomputes_layers_and_gives_the_same_gradients(kind):
    if kind == "vqvae":
        make, inner = (lambda: VQVAEModel(VQVAEConfig(**TINY_VQVAE))), (lambda model: model.encoder.residual_stack[0].conv3x3)
        batch = dict(pixel_values=images())
    else:
        make, inner = (lambda: tiny_prior()), (lambda model: model.pixelcnn.layers[0].vertical_conv)
        codes = torch.randint(0, 16, (2, 4, 4))
        batch = dict(input_ids=codes, labels=codes)
    plain = make().train()
    checkpointed = make().train()
    checkpointed.load_state_dict(plain.state_dict())
    assert plain.supports_gradient_checkpointing
    checkpointed.activation_checkpointing_enable()  # transformers 5's name of gradient_checkpointing_enable
    assert checkpointed.is_activation_checkpointing

    plain_calls, checkpointed_calls = counted_forwards(inner(plain)), counted_forwards(inner(checkpointed))
    plain(**batch).loss.backward()
    checkpointed(**batch).loss.backward()
    assert len(plain_calls) == 1 and len(checkpointed_calls) == 2  # recomputed in the backward pass
    expected, actual = gradients(plain), gradients(checkpointed)
    assert expected.keys() == actual.keys() and len(expected) > 4
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], msg=name)


# ------------------------------------------------------------------------------------------------ export


def assert_export_matches_eager(model, example_inputs: dict, inputs: dict) -> None:
    """torch.export traces `model` on `example_inputs` (keyword arguments); the exported program gives the eager
    outputs on other `inputs` of the same shapes. Shared by every model's export test."""
    exported = torch.export.export(model, (), {**example_inputs, "return_dict": False}).module()
    actual, expected = exported(**inputs, return_dict=False), model(**inputs, return_dict=False)
    assert len(actual) == len(expected)
    for exported_output, eager_output in zip(actual, expected):
        torch.testing.assert_close(exported_output, eager_output)


def assert_onnx_export_matches_eager(path, model, inputs: dict) -> None:
    """ONNX export (dynamo) of `model` on `inputs` (keyword arguments): onnxruntime gives the eager outputs."""
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.onnx.export(model, (), kwargs={**inputs, "return_dict": False}, dynamo=True).save(path)
    session = onnxruntime.InferenceSession(path)
    outputs = session.run(None, {given.name: inputs[given.name].numpy() for given in session.get_inputs()})
    expected = model(**inputs, return_dict=False)
    assert len(outputs) == len(expected)
    for actual, eager_output in zip(outputs, expected):
        np.testing.assert_allclose(actual, eager_output.detach().numpy(), atol=1e-5, rtol=0)


def test_prior_and_vqvae_export_with_torch_export_and_match_eager():
    prior = tiny_prior(num_classes=2)
    assert_export_matches_eager(
        prior, dict(input_ids=torch.randint(0, 16, (2, 4, 4)), class_labels=torch.tensor([0, 1])),
        dict(input_ids=torch.randint(0, 16, (2, 4, 4)), class_labels=torch.tensor([1, 1])),
    )
    with pytest.raises(ValueError, match=r"must hold codes in \[0, 16\)"):
        prior(torch.randint(16, 32, (2, 4, 4)))  # eager keeps its value checks
    assert_export_matches_eager(VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval(), dict(pixel_values=images()), dict(pixel_values=images()))


@pytest.mark.slow
def test_prior_and_vqvae_export_to_onnx_and_onnxruntime_matches_eager(tmp_path):
    inputs = dict(input_ids=torch.randint(0, 16, (2, 4, 4)), class_labels=torch.tensor([0, 1]))
    assert_onnx_export_matches_eager(tmp_path / "prior.onnx", tiny_prior(num_classes=2), inputs)
    assert_onnx_export_matches_eager(tmp_path / "vqvae.onnx", VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval(), dict(pixel_values=images()))


# ------------------------------------------------------------------------------------------------ pipeline


@pytest.fixture
def pipeline(tiny_model) -> VQVAEPipeline:
    return VQVAEPipeline(vqvae=tiny_model.eval(), prior=tiny_prior(num_classes=2))


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_list_of_generators_gives_image_i_the_draws_of_generator_i(pipeline, use_cache):
    seeds = [3, 7, 11]
    batch = pipeline.prior.sample(
        3, class_labels=[0, 1, 1], generator=[torch.Generator().manual_seed(seed) for seed in seeds], use_cache=use_cache
    )
    for index, (seed, label) in enumerate(zip(seeds, [0, 1, 1])):
        alone = pipeline.prior.sample(1, class_labels=[label], generator=torch.Generator().manual_seed(seed), use_cache=use_cache)
        assert torch.equal(batch[index], alone[0])
    assert not torch.equal(batch[1], batch[2])

    images_out = pipeline(
        batch_size=2, class_labels=1, generator=[torch.Generator().manual_seed(seed) for seed in seeds[:2]], output_type="np"
    )
    second_alone = pipeline(batch_size=1, class_labels=1, generator=torch.Generator().manual_seed(seeds[1]), output_type="np")
    assert torch.equal(images_out.codes[1], second_alone.codes[0])
    np.testing.assert_allclose(images_out.images[1], second_alone.images[0], atol=1e-6, rtol=0)  # batched decoding rounds alike
    with pytest.raises(ValueError, match="one per grid: got 2 for batch_size=3"):
        pipeline(batch_size=3, class_labels=1, generator=[torch.Generator(), torch.Generator()])


def test_the_pipeline_works_and_saves_without_an_image_processor(tmp_path, pipeline, tiny_model):
    assert pipeline.image_processor is None
    photos = [PIL.Image.fromarray(np.full((20, 20, 3), value, dtype=np.uint8)) for value in (30, 200)]
    with_processor = VQVAEPipeline(tiny_model, pipeline.prior, VQVAEImageProcessor.for_vqvae(tiny_model.config))
    np.testing.assert_array_equal(pipeline(image=photos, output_type="np").images, with_processor(image=photos, output_type="np").images)
    with_processor.image_processor = None
    sampled = with_processor(batch_size=2, class_labels=0, generator=torch.Generator().manual_seed(0))
    assert len(sampled.images) == 2 and sampled.images[0].size == (16, 16)

    with_processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["image_processor"] == [None, None]
    reloaded = VQVAEPipeline.from_pretrained(tmp_path)
    assert reloaded.image_processor is None
    again = reloaded(batch_size=2, class_labels=0, generator=torch.Generator().manual_seed(0), output_type="np")
    np.testing.assert_array_equal(again.images, with_processor(batch_size=2, class_labels=0, generator=torch.Generator().manual_seed(0), output_type="np").images)


def test_the_card_says_how_each_entry_point_loads_the_pipeline():
    card = pipeline_card_text()
    assert 'VQVAEPipeline.from_pretrained("org/name")' in card and "pip install hf-vqvae" in card
    assert 'DiffusionPipeline.from_pretrained("org/name", trust_remote_code=True)' in card and "hf_vqvae_entry.py" in card


def pipeline_card_text() -> str:
    from hf_vqvae.pipelines.pipeline_cards import pipeline_model_card

    return str(pipeline_model_card(VQVAEConfig(**TINY_VQVAE), tiny_prior().config, "org/name"))


def test_saved_configs_name_the_package_that_loads_them(tmp_path):
    VQVAEModel(VQVAEConfig(**TINY_VQVAE)).save_pretrained(tmp_path / "vqvae")
    tiny_prior().save_pretrained(tmp_path / "prior")
    for folder in ("vqvae", "prior"):
        config = json.loads((tmp_path / folder / "config.json").read_text())
        assert config["library_name"] == "hf-vqvae" and "import hf_vqvae" in config["loading_hint"]
        assert config["hf_vqvae_version"]
    without_import = subprocess.run(
        [sys.executable, "-c", f"from transformers import AutoModel; AutoModel.from_pretrained({str(tmp_path / 'vqvae')!r})"],
        capture_output=True, text=True, timeout=120,
    )
    assert without_import.returncode != 0 and "model type `hf_vqvae`" in without_import.stderr

    from transformers import AutoModel

    assert isinstance(AutoModel.from_pretrained(tmp_path / "vqvae"), VQVAEModel)  # hf_vqvae is imported here
    reloaded = VQVAEConfig.from_pretrained(tmp_path / "vqvae")
    assert reloaded.to_dict()["library_name"] == "hf-vqvae" and "library_name" not in reloaded.__dict__

    from hf_vqvae.models.vqvae.model_card_vqvae import vqvae_model_card

    card = str(vqvae_model_card(reloaded, "org/name"))
    assert "import hf_vqvae" in card and "| `hf_vqvae_version` |" not in card  # not in the configuration table


# ------------------------------------------------------------------------------------------------ bad input


def test_non_finite_pixels_are_refused(tiny_model, pipeline):
    pixel_values = images()
    pixel_values[1, 0, 3, 3] = math.nan
    pixel_values[0, 2, 0, 0] = math.inf
    for model_mode in (tiny_model.eval, tiny_model.train):
        model_mode()
        with pytest.raises(ValueError, match=r"pixel_values hold 2 NaN or Inf values"):
            tiny_model(pixel_values)
    with pytest.raises(ValueError, match="NaN or Inf"):
        pipeline(image=pixel_values)


def test_a_non_finite_batch_never_enters_the_ema_state():
    quantizer = VectorQuantizer(num_embeddings=8, embedding_dim=3, kmeans_init=True, dead_code_threshold=0.5).train()
    poisoned = torch.randn(4, 3, 5)
    poisoned[2, :, 1] = math.nan
    quantizer(poisoned)
    assert not bool(quantizer.initialized)  # k-means waits for a finite batch
    clean = torch.randn(4, 3, 5)
    quantizer(clean)
    assert bool(quantizer.initialized)
    state = {name: tensor.clone() for name, tensor in quantizer.state_dict().items()}
    quantizer(poisoned)
    for name in ("embedding", "cluster_size", "embed_sum", "codes_used"):
        assert torch.equal(quantizer.state_dict()[name], state[name]), name
    quantizer(clean)
    assert not torch.equal(quantizer.embed_sum, state["embed_sum"]) and torch.isfinite(quantizer.embedding).all()


def test_pixel_values_far_outside_minus_one_one_are_refused(tiny_model, pipeline):
    as_bytes = (images() + 1) * 127.5
    with pytest.raises(ValueError, match=r"pixel_values must lie in \[-1, 1\], got values up to .*0\.\.255"):
        tiny_model(as_bytes)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        pipeline(image=as_bytes)
    tiny_model(images() * 1.2)  # a little overshoot (interpolation, augmentation) is fine


def test_float64_and_float16_pixels_are_cast_to_the_model_dtype(tiny_model):
    tiny_model.eval()
    pixel_values = images()
    expected = tiny_model(pixel_values).reconstruction
    torch.testing.assert_close(tiny_model(pixel_values.double()).reconstruction, expected)
    half = pixel_values.half()
    torch.testing.assert_close(tiny_model(half).reconstruction, tiny_model(half.float()).reconstruction)
    assert tiny_model.encode(pixel_values.double()).latents.dtype == torch.float32


@pytest.mark.parametrize(
    "config_class, field, value, allowed",
    [
        (VQVAEConfig, "decay", "0.9", r"a finite number in \(0, 1\), got '0.9'"),
        (VQVAEConfig, "commitment_cost", None, "a finite number >= 0, got None"),
        (VQVAEConfig, "commitment_cost", math.nan, "a finite number >= 0, got nan"),
        (VQVAEConfig, "epsilon", math.inf, "a finite number > 0, got inf"),
        (VQVAEConfig, "kmeans_init", "no", "True or False, got 'no'"),
        (VQVAEConfig, "dead_code_threshold", True, "a finite number >= 0, got True"),
        (VQVAEConfig, "kmeans_iters", 2.5, "an integer >= 0, got 2.5"),
        (VQVAEConfig, "update_rule", None, r"one of \('loss', 'ema'\), got None"),
        (PixelCNNPriorConfig, "num_layers", "3", "a positive integer, got '3'"),
        (PixelCNNPriorConfig, "num_classes", None, r"a non-negative integer \(0 = unconditional\), got None"),
    ],
)
def test_every_config_field_is_checked_for_type_and_finiteness(config_class, field, value, allowed):
    with pytest.raises(ValueError, match=rf"{config_class.__name__}\.{field} must be {allowed}"):
        config_class(**{field: value})


def test_weights_with_nan_or_inf_are_refused_naming_the_tensors(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["decoder.conv_in.weight"][0, 0, 0, 0] = math.nan
    weights["quantizer.embed_sum"][3, 1] = math.inf
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"NaN or Inf values in (decoder.conv_in.weight, quantizer.embed_sum|quantizer.embed_sum, decoder.conv_in.weight) "):
        VQVAEModel.from_pretrained(tmp_path)


def sixteen_bit_png(value: int) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.full((16, 16), value, dtype=np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("num_channels", [1, 3])
def test_sixteen_bit_grayscale_pngs_are_scaled_by_their_bit_depth(num_channels):
    processor = VQVAEImageProcessor(resolution=16, num_channels=num_channels)
    for value, expected in ((0, -1.0), (65535, 1.0), (32768, 128 / 255 * 2 - 1)):
        image = decode_image(sixteen_bit_png(value))
        assert image.mode in ("I;16", "I")
        pixel_values = processor(image, return_tensors="pt")["pixel_values"]
        assert pixel_values.shape == (1, num_channels, 16, 16)
        torch.testing.assert_close(pixel_values, torch.full_like(pixel_values, expected))


# ------------------------------------------------------------------------------------------------ damaged files, missing folders


def test_a_damaged_codes_info_is_a_clear_error(tmp_path):
    info = CodesInfo("org/vqvae", 16, 4, 4, "cifar10")
    (tmp_path / "codes_info.json").write_text(info.to_json()[:-10])
    with pytest.raises(ValueError, match=r"codes_info.json is damaged \(not valid JSON"):
        CodesInfo.load(str(tmp_path))
    (tmp_path / "codes_info.json").write_text(json.dumps({**json.loads(info.to_json()), "colour": "red"}))
    with pytest.raises(ValueError, match=r"codes_info.json must hold exactly the keys .*got .*'colour'"):
        CodesInfo.load(str(tmp_path))
    (tmp_path / "codes_info.json").write_text(json.dumps({**json.loads(info.to_json()), "num_embeddings": "16"}))
    with pytest.raises(ValueError, match="'num_embeddings' must be of type int, got '16'"):
        CodesInfo.load(str(tmp_path))
    (tmp_path / "codes_info.json").write_text(info.to_json())
    assert CodesInfo.load(str(tmp_path)) == info


def damage(path) -> None:
    data = bytearray(path.read_bytes())
    data[10:30] = b"x" * 20  # inside the JSON header
    path.write_bytes(bytes(data))


def test_a_damaged_safetensors_file_is_named(tmp_path, pipeline):
    pipeline.save_pretrained(tmp_path)
    damage(tmp_path / "prior" / "model.safetensors")
    with pytest.raises(OSError, match=r"damaged or truncated safetensors file: .*prior/model.safetensors"):
        PixelCNNPriorModel.from_pretrained(tmp_path / "prior")
    with pytest.raises(OSError, match=r"prior/model.safetensors"):
        VQVAEPipeline.from_pretrained(tmp_path)


def test_a_local_path_that_does_not_exist_is_named_as_a_missing_folder(offline_hub, tmp_path, monkeypatch):
    # From an empty folder: the README's quick start leaves an `outputs/vqvae` in the checkout.
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no-such-run"
    for load in (VQVAEPipeline.from_pretrained, VQVAEModel.from_pretrained, load_vqvae):
        with pytest.raises(FileNotFoundError, match=rf"the folder '{missing}' does not exist"):
            load(str(missing))
    # "outputs/vqvae" could also be a Hub id: both are said.
    for load in (VQVAEPipeline.from_pretrained, VQVAEModel.from_pretrained):
        with pytest.raises(FileNotFoundError, match=r"the folder 'outputs/vqvae' does not exist .*as a Hub id it could not be loaded"):
            load("outputs/vqvae")
    # The VQ-VAE path a codes data set names goes through the same check.
    info = CodesInfo(str(missing / "vqvae"), 16, 4, 4, "cifar10")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vqvae(info.vqvae)


def test_a_pipeline_folder_missing_a_component_names_it(tmp_path, pipeline):
    import shutil

    pipeline.save_pretrained(tmp_path)
    shutil.rmtree(tmp_path / "prior")
    with pytest.raises(FileNotFoundError, match=r"has no prior/ subfolder: model_index.json lists the component 'prior' \(PixelCNNPriorModel\)"):
        VQVAEPipeline.from_pretrained(tmp_path)
    assert VQVAEPipeline.from_pretrained(tmp_path, prior=pipeline.prior).prior is pipeline.prior


# ------------------------------------------------------------------------------------------------ every pipeline


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def photos() -> list:
    return [PIL.Image.fromarray(np.full((20, 20, 3), value, dtype=np.uint8)) for value in (30, 200)]


def build_pipeline(kind: str, with_optional_components: bool = True):
    """A tiny pipeline of each kind; its optional components given (matching the models) or None."""
    # Imported here: those test modules import this one's shared checks.
    from test_audio_vqvae import TINY_AUDIO
    from test_hierarchy import TINY_STAGE2, TINY_TOP_PRIOR
    from test_video_prior import TINY_VIDEO_PRIOR

    vqvae = VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()
    processor = VQVAEImageProcessor.for_vqvae(vqvae.config) if with_optional_components else None
    if kind == "vqvae":
        return VQVAEPipeline(vqvae=vqvae, prior=tiny_prior(num_classes=2), image_processor=processor)
    if kind == "hierarchical":
        stage2 = HierarchicalVQVAEModel(HierarchicalVQVAEConfig(**TINY_STAGE2)).eval()
        top_prior = PixelCNNPriorModel(PixelCNNPriorConfig(**TINY_TOP_PRIOR)).eval()
        return HierarchicalVQVAEPipeline(vqvae=vqvae, stage2=stage2, prior=top_prior, image_processor=processor)
    if kind == "video":
        video_prior = VideoPriorModel(VideoPriorConfig(**TINY_VIDEO_PRIOR)).eval()
        return VideoPredictionPipeline(vqvae=vqvae, video_prior=video_prior, image_processor=processor)
    audio_vqvae = AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO)).eval()
    if not with_optional_components:
        return AudioVQVAEPipeline(vqvae=audio_vqvae, prior=None, feature_extractor=None)
    return AudioVQVAEPipeline(
        vqvae=audio_vqvae, prior=tiny_prior(num_classes=3, grid_height=1, grid_width=6),
        feature_extractor=AudioVQVAEFeatureExtractor.for_model(audio_vqvae.config),
    )


def outputs(pipeline) -> list[np.ndarray]:
    """Seeded outputs of a pipeline, through every path its optional components serve."""
    if isinstance(pipeline, VQVAEPipeline):
        return [
            pipeline(batch_size=2, class_labels=[0, 1], generator=seeded(), output_type="np").images,
            pipeline(image=photos(), output_type="np").images,
        ]
    if isinstance(pipeline, HierarchicalVQVAEPipeline):
        return [
            pipeline(batch_size=2, generator=seeded(), output_type="np").images,
            pipeline(image=photos(), generator=seeded(), output_type="np").images,
        ]
    if isinstance(pipeline, VideoPredictionPipeline):
        return [pipeline(frames=[photo.resize((16, 16)) for photo in photos()], actions=[0, 2], generator=seeded(), output_type="np").frames]
    from test_audio_vqvae import speech_like

    waveform = speech_like(1, 64)[0].numpy()
    results = [pipeline(audio=waveform, sampling_rate=16000, speaker="ann", generator=seeded()).audios]
    if pipeline.prior is not None:
        results.append(pipeline(speaker="bob", generator=seeded()).audios)
    return results


def assert_same_outputs(left: list[np.ndarray], right: list[np.ndarray]) -> None:
    assert len(left) == len(right)
    for expected, actual in zip(left, right):
        np.testing.assert_array_equal(actual, expected)


PIPELINE_KINDS = ["vqvae", "hierarchical", "video", "audio"]
OPTIONAL_COMPONENTS = {"vqvae": ["image_processor"], "hierarchical": ["image_processor"], "video": ["image_processor"], "audio": ["prior", "feature_extractor"]}


@pytest.fixture
def modules_cache(tmp_path, monkeypatch):
    """diffusers copies custom pipeline code into its module cache: a fresh one per test, off the user's."""
    import diffusers.utils.dynamic_modules_utils as dynamic_modules

    monkeypatch.setattr(dynamic_modules, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path / "modules"


@pytest.mark.parametrize("kind", PIPELINE_KINDS)
def test_every_pipeline_saves_and_loads_a_variant_as_diffusers_does(tmp_path, kind):
    pipeline = build_pipeline(kind)
    pipeline.save_pretrained(tmp_path, variant="fp16")
    model_folders = [name for name, component in pipeline.components.items() if isinstance(component, torch.nn.Module)]
    for name in model_folders:
        assert sorted(path.name for path in (tmp_path / name).glob("*.safetensors")) == ["model.fp16.safetensors"], name
    loaded = type(pipeline).from_pretrained(tmp_path, variant="fp16")
    assert_same_outputs(outputs(pipeline), outputs(loaded))
    with pytest.raises(OSError):
        type(pipeline).from_pretrained(tmp_path)  # no plain weights: the variant must be asked for, as in diffusers


@pytest.mark.parametrize("kind", PIPELINE_KINDS)
def test_every_pipeline_runs_without_its_optional_components_and_keeps_them_none(tmp_path, kind):
    given, left_out = build_pipeline(kind), build_pipeline(kind, with_optional_components=False)
    for name, component in given.components.items():  # the same weights in both
        if isinstance(component, torch.nn.Module) and left_out.components[name] is not None:
            left_out.components[name].load_state_dict(component.state_dict())
    assert all(getattr(left_out, name) is None for name in OPTIONAL_COMPONENTS[kind])
    given_outputs = outputs(given)
    expected = given_outputs[: len(outputs(left_out))]
    assert_same_outputs(expected, outputs(left_out))  # the matching processor is made when it is None

    left_out.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    for name in OPTIONAL_COMPONENTS[kind]:
        assert index[name] == [None, None] and not (tmp_path / name).exists()
    reloaded = type(left_out).from_pretrained(tmp_path)
    assert all(getattr(reloaded, name) is None for name in OPTIONAL_COMPONENTS[kind])
    assert_same_outputs(expected, outputs(reloaded))


@pytest.mark.parametrize("kind", PIPELINE_KINDS)
def test_diffusers_generic_entry_point_loads_every_pipeline_from_a_folder_and_a_hub_id(
    tmp_path, offline_hub, modules_cache, monkeypatch, kind
):
    pipeline = build_pipeline(kind)
    folder = tmp_path / "saved"
    pipeline.save_pretrained(folder)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        DiffusionPipeline.from_pretrained(folder)  # diffusers runs no custom code unless told to
    expected = outputs(pipeline)
    loaded = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    assert type(loaded) is type(pipeline)
    assert_same_outputs(expected, outputs(loaded))

    # A Hub id, offline, from the cache.
    put_in_hub_cache(offline_hub, f"org/{kind}", folder)
    assert_same_outputs(expected, outputs(DiffusionPipeline.from_pretrained(f"org/{kind}", trust_remote_code=True)))

    # A Hub id with the Hub answering (model_info lists the repository's files; the files come from the cache):
    # diffusers then checks each component's module against the listing, as it does online.
    import diffusers.pipelines.pipeline_utils as diffusers_pipelines
    import diffusers.utils.dynamic_modules_utils as dynamic_modules
    from types import SimpleNamespace

    snapshot = next((offline_hub / f"models--org--{kind}" / "snapshots").iterdir())
    files = [str(path.relative_to(snapshot)) for path in snapshot.rglob("*") if path.is_file()]
    info = SimpleNamespace(sha=snapshot.name, siblings=[SimpleNamespace(rfilename=name) for name in files])
    for module in (diffusers_pipelines, dynamic_modules):
        monkeypatch.setattr(module, "model_info", lambda *args, **kwargs: info)
    assert_same_outputs(expected, outputs(DiffusionPipeline.from_pretrained(f"org/{kind}", trust_remote_code=True)))


def test_the_package_never_runs_the_entry_module_that_diffusers_runs(tmp_path, modules_cache, pipeline):
    pipeline.save_pretrained(tmp_path)
    entries = sorted(tmp_path.rglob("hf_vqvae_entry.py"))
    assert [path.parent.name for path in entries] == [tmp_path.name, "prior", "vqvae"]
    for path in entries:
        path.write_text("raise RuntimeError('the entry module ran')\n")
    loaded = VQVAEPipeline.from_pretrained(tmp_path)  # the package's own loading: no file of the folder runs
    assert torch.equal(loaded(batch_size=2, class_labels=0, generator=seeded(), output_type="latent").codes,
                       pipeline(batch_size=2, class_labels=0, generator=seeded(), output_type="latent").codes)
    with pytest.raises(RuntimeError, match="the entry module ran"):
        DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)  # the generic loader runs it: trust it first

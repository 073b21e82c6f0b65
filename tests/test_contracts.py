"""The image models' and pipeline's contracts beyond the ones every model and pipeline meets (those are in
tests/model_contracts.py and tests/pipeline_contracts.py, run per model under tests/models/ and tests/pipelines/):
the quantizer's state under every dtype, loading escape hatches, gradient checkpointing recomputing layers, ONNX
export, per-image generators; and bad input, damaged files and missing folders met with errors that say what is
wrong."""

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

from hf_vqvae import (
    CheckpointMismatchError,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    VectorQuantizer,
    VQVAEConfig,
    VQVAEImageProcessor,
    VQVAEModel,
    VQVAEPipeline,
)
from hf_vqvae.data.codes import CodesInfo
from hf_vqvae.data.images import decode_image
from hf_vqvae.models.auto import load_vqvae
from hf_vqvae.version import INSTALL_COMMAND

from conftest import TINY_VQVAE
from model_contracts import assert_onnx_export_matches_eager


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


# ------------------------------------------------------------------------------------------------ gradient checkpointing


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
    assert 'VQVAEPipeline.from_pretrained("org/name")' in card and INSTALL_COMMAND in card
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

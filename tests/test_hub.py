import inspect
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor, AutoModel

from hf_vqvae import VQVAEConfig, VQVAEImageProcessor, VQVAEModel

from conftest import TINY_VQVAE, put_in_hub_cache


def trained_a_little(model: VQVAEModel, steps: int = 3) -> VQVAEModel:
    """A few training forwards so k-means, EMA and usage buffers hold non-default values."""
    model.train()
    for _ in range(steps):
        model(torch.rand(4, 3, 16, 16) * 2 - 1)
    return model.eval()


def assert_same_state(left: VQVAEModel, right: VQVAEModel) -> None:
    left_state, right_state = left.state_dict(), right.state_dict()
    assert left_state.keys() == right_state.keys()
    for name in left_state:
        assert torch.equal(left_state[name].to(right_state[name].dtype), right_state[name]), name


def test_save_and_load_round_trip_is_bit_exact_with_ema_buffers(tmp_path, tiny_model):
    model = trained_a_little(tiny_model)
    assert bool(model.quantizer.initialized) and model.quantizer.restart_step > 0
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin")), "weights must be safetensors only"
    stored = load_file(tmp_path / "model.safetensors")
    for buffer in ("cluster_size", "embed_sum", "initialized", "restart_step", "codes_used"):
        assert f"quantizer.{buffer}" in stored

    loaded = VQVAEModel.from_pretrained(tmp_path).eval()
    assert_same_state(model, loaded)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(model(images).reconstruction, loaded(images).reconstruction)
    # Training resumes from the same EMA state: one more step agrees exactly.
    loaded.train(), model.train()
    step_images = torch.rand(4, 3, 16, 16) * 2 - 1
    assert torch.equal(model(step_images).loss, loaded(step_images).loss)
    assert torch.equal(model.quantizer.embedding, loaded.quantizer.embedding)


def test_a_variant_saves_and_loads_under_its_own_name(tmp_path, tiny_model):
    # DiffusionPipeline.save_pretrained passes `variant` only to a save method whose signature names it.
    assert {"variant", "max_shard_size"} <= set(inspect.signature(tiny_model.save_pretrained).parameters)
    model = trained_a_little(tiny_model)
    model.save_pretrained(tmp_path, variant="fp16")
    assert sorted(path.name for path in tmp_path.glob("*.safetensors")) == ["model.fp16.safetensors"]
    assert_same_state(model, VQVAEModel.from_pretrained(tmp_path, variant="fp16"))
    with pytest.raises(OSError, match="model.safetensors"):
        VQVAEModel.from_pretrained(tmp_path)  # the plain weights are not there: the variant must be asked for


def test_bf16_round_trip_is_bit_exact(tmp_path, tiny_model):
    model = trained_a_little(tiny_model).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    loaded = VQVAEModel.from_pretrained(tmp_path).eval()
    assert loaded.encoder.conv_in.weight.dtype == torch.bfloat16
    assert loaded.quantizer.embedding.dtype == torch.float32  # distances stay fp32
    assert_same_state(model, loaded)
    images = (torch.rand(2, 3, 16, 16) * 2 - 1).bfloat16()
    assert torch.equal(model(images).reconstruction, loaded(images).reconstruction)


def test_from_pretrained_hub_id_through_offline_cache(offline_hub, tmp_path, tiny_model):
    model = trained_a_little(tiny_model)
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    VQVAEImageProcessor(resolution=16).save_pretrained(folder)
    put_in_hub_cache(offline_hub, "org/vqvae-tiny", folder)

    loaded = VQVAEModel.from_pretrained("org/vqvae-tiny").eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(model(images).reconstruction, loaded(images).reconstruction)
    assert isinstance(AutoModel.from_pretrained("org/vqvae-tiny"), VQVAEModel)
    processor = AutoImageProcessor.from_pretrained("org/vqvae-tiny")
    assert isinstance(processor, VQVAEImageProcessor) and processor.crop_size["height"] == 16
    with pytest.raises(OSError):
        VQVAEModel.from_pretrained("org/not-in-cache")


def test_push_to_hub_uploads_config_weights_processor_and_card(recorded_uploads, tiny_model):
    tiny_model.push_to_hub(
        "org/vqvae-tiny", image_processor=VQVAEImageProcessor(resolution=16), metrics={"psnr": 31.5}, dataset_name="cifar10"
    )
    create, upload = recorded_uploads
    assert create["create_repo"] == "org/vqvae-tiny"
    assert upload["repo_id"] == "org/vqvae-tiny"
    assert sorted(upload["files"]) == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    assert json.loads(upload["files"]["config.json"])["model_type"] == "hf_vqvae"
    card = upload["files"]["README.md"].decode()
    assert card.startswith("---\n") and "library_name: hf-vqvae" in card
    assert "- cifar10" in card and "| psnr | 31.5 |" in card
    assert 'VQVAEModel.from_pretrained("org/vqvae-tiny")' in card
    assert "| `num_embeddings` | `16` |" in card


def test_checkpoint_from_a_different_config_fails_to_load(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    other = VQVAEConfig(**{**TINY_VQVAE, "num_embeddings": 32})
    with pytest.raises(ValueError, match=r"quantizer.embedding: checkpoint has shape \(16, 4\), the config gives \(32, 4\)"):
        VQVAEModel.from_pretrained(tmp_path, config=other)


def test_corrupt_checkpoint_fails_with_a_clear_error(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(Exception, match="(?i)safetensors|header|deserializ"):
        VQVAEModel.from_pretrained(tmp_path)


def test_missing_weights_fail_to_load(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["decoder.conv_in.weight"]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="decoder.conv_in.weight: missing from the checkpoint"):
        VQVAEModel.from_pretrained(tmp_path)


def test_image_processor_round_trip_and_conversions(tmp_path):
    processor = VQVAEImageProcessor(resolution=16)
    rgba = (np.random.default_rng(0).random((20, 30, 4)) * 255).astype(np.uint8)
    gray = (np.random.default_rng(1).random((24, 24)) * 255).astype(np.uint8)
    from PIL import Image

    pixel_values = processor([Image.fromarray(rgba), Image.fromarray(gray)], return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (2, 3, 16, 16)
    assert pixel_values.min() >= -1 and pixel_values.max() <= 1
    processor.save_pretrained(tmp_path)
    assert VQVAEImageProcessor.from_pretrained(tmp_path).to_dict() == processor.to_dict()

    exact = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    restored = processor.postprocess(processor([exact], return_tensors="pt")["pixel_values"], output_type="np")
    assert np.abs(restored[0] * 255 - exact).max() < 0.51
    images = processor.postprocess(torch.zeros(2, 3, 16, 16))
    assert len(images) == 2 and images[0].size == (16, 16)
    assert processor.postprocess(torch.zeros(1, 3, 4, 4), output_type="pt").shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="output_type must be one of"):
        processor.postprocess(torch.zeros(1, 3, 4, 4), output_type="latent")

    gray_processor = VQVAEImageProcessor(resolution=16, num_channels=1)
    assert gray_processor([rgba], return_tensors="pt")["pixel_values"].shape == (1, 1, 16, 16)


def tiny_prior_config(**overrides):
    from hf_vqvae import PixelCNNPriorConfig

    fields = dict(num_embeddings=16, grid_height=4, grid_width=4, hidden_channels=8, num_layers=2, kernel_size=3, skip_channels=8)
    return PixelCNNPriorConfig(**{**fields, **overrides})


def test_prior_loads_by_hub_id_and_pushes_with_its_card(offline_hub, recorded_uploads, tmp_path):
    from hf_vqvae import PixelCNNPriorModel

    prior = PixelCNNPriorModel(tiny_prior_config(num_classes=3)).eval()
    prior.save_pretrained(tmp_path / "prior")
    put_in_hub_cache(offline_hub, "org/prior-tiny", tmp_path / "prior")
    loaded = AutoModel.from_pretrained("org/prior-tiny")
    assert isinstance(loaded, PixelCNNPriorModel)
    codes = torch.randint(0, 16, (2, 4, 4))
    labels = torch.tensor([0, 2])
    assert torch.equal(prior(codes, class_labels=labels).logits, loaded(codes, class_labels=labels).logits)

    prior.push_to_hub("org/prior-tiny", metrics={"bits_per_code": 2.5})
    upload = recorded_uploads[-1]
    assert sorted(upload["files"]) == ["README.md", "config.json", "model.safetensors"]
    card = upload["files"]["README.md"].decode()
    assert "pixelcnn" in card and "| bits_per_code | 2.5 |" in card and "conditioned on one of 3 classes" in card


def test_prior_checkpoint_from_another_config_fails_to_load(tmp_path):
    from hf_vqvae import PixelCNNPriorModel

    PixelCNNPriorModel(tiny_prior_config()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"pixelcnn.output_logits.weight: checkpoint has shape \(16, 8, 1, 1\), the config gives \(32, 8, 1, 1\)"):
        PixelCNNPriorModel.from_pretrained(tmp_path, config=tiny_prior_config(num_embeddings=32))
    with pytest.raises(ValueError, match="layers.1.vertical_conv.weight: in the checkpoint but not in the model"):
        PixelCNNPriorModel.from_pretrained(tmp_path, config=tiny_prior_config(num_layers=1))

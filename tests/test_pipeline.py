import json

import numpy as np
import PIL.Image
import pytest
import torch

from hf_vqvae import PixelCNNPriorConfig, PixelCNNPriorModel, VQVAEImageProcessor, VQVAEPipeline

from conftest import put_in_hub_cache, seeded


def tiny_prior(num_classes: int = 2, **overrides) -> PixelCNNPriorModel:
    fields = dict(
        num_embeddings=16, grid_height=4, grid_width=4, hidden_channels=8, num_layers=2, kernel_size=3,
        skip_channels=8, num_classes=num_classes, id2label={0: "stripes", 1: "dots"} if num_classes == 2 else None,
    )
    return PixelCNNPriorModel(PixelCNNPriorConfig(**{**fields, **overrides})).eval()


@pytest.fixture
def pipeline(tiny_model) -> VQVAEPipeline:
    processor = VQVAEImageProcessor.for_vqvae(tiny_model.config)
    return VQVAEPipeline(vqvae=tiny_model.eval(), prior=tiny_prior(), image_processor=processor)



def test_generates_reproducible_images_in_every_output_type(pipeline):
    pil = pipeline(batch_size=3, class_labels=[0, 1, 1], generator=seeded())
    assert len(pil.images) == 3 and all(isinstance(image, PIL.Image.Image) for image in pil.images)
    assert pil.images[0].size == (16, 16)
    assert pil.codes.shape == (3, 4, 4)

    as_np = pipeline(batch_size=3, class_labels=[0, 1, 1], generator=seeded(), output_type="np")
    assert torch.equal(as_np.codes, pil.codes)
    assert as_np.images.shape == (3, 16, 16, 3) and 0 <= as_np.images.min() and as_np.images.max() <= 1
    np.testing.assert_array_equal(np.asarray(pil.images[1]), (as_np.images[1] * 255).round().astype(np.uint8))

    as_pt = pipeline(batch_size=3, class_labels=[0, 1, 1], generator=seeded(), output_type="pt")
    assert as_pt.images.shape == (3, 3, 16, 16)
    expected = pipeline.vqvae.decode(pil.codes).reconstruction
    torch.testing.assert_close(as_pt.images, (expected / 2 + 0.5).clamp(0, 1))

    codes = pipeline(batch_size=3, class_labels=[0, 1, 1], generator=seeded(), output_type="latent")
    assert torch.equal(codes.images, pil.codes)
    images, codes_again = pipeline(batch_size=3, class_labels=[0, 1, 1], generator=seeded(), return_dict=False)
    assert torch.equal(codes_again, pil.codes)

    other_seed = pipeline(batch_size=3, class_labels=[0, 1, 1], generator=seeded(1), output_type="latent")
    assert not torch.equal(other_seed.images, pil.codes)


def test_class_labels_by_name_and_broadcast(pipeline):
    by_name = pipeline(batch_size=2, class_labels="dots", generator=seeded(), output_type="latent").images
    by_id = pipeline(batch_size=2, class_labels=[1, 1], generator=seeded(), output_type="latent").images
    assert torch.equal(by_name, by_id)
    with pytest.raises(ValueError, match="unknown class label 'cats'; the prior knows \\['dots', 'stripes'\\]"):
        pipeline(class_labels="cats")


def test_without_batch_size_the_batch_follows_the_class_labels(pipeline):
    by_labels = pipeline(class_labels=["dots", "stripes", "dots"], generator=seeded(), output_type="latent").images
    by_batch = pipeline(batch_size=3, class_labels=[1, 0, 1], generator=seeded(), output_type="latent").images
    assert by_labels.shape == (3, 4, 4) and torch.equal(by_labels, by_batch)
    assert len(pipeline(class_labels="dots", generator=seeded()).images) == 1
    assert torch.equal(pipeline.prior.sample(class_labels=[1, 0, 1], generator=seeded()), by_batch)
    with pytest.raises(ValueError, match=r"got 2 class labels for batch_size=3: pass one class label for every image or one per image"):
        pipeline(batch_size=3, class_labels=["dots", "stripes"])
    with pytest.raises(ValueError, match="got an empty list of class labels"):
        pipeline(class_labels=[])


def test_reconstructs_given_images(pipeline):
    images = [PIL.Image.fromarray(np.full((20, 20, 3), value, dtype=np.uint8)) for value in (30, 200)]
    out = pipeline(image=images, output_type="pt")
    pixel_values = pipeline.image_processor(images, return_tensors="pt")["pixel_values"]
    expected = pipeline.vqvae(pixel_values).reconstruction
    torch.testing.assert_close(out.images, (expected / 2 + 0.5).clamp(0, 1))
    assert torch.equal(out.codes, pipeline.vqvae.encode(pixel_values).indices)


def test_save_load_local_and_replace_a_component(tmp_path, pipeline):
    pipeline.save_pretrained(tmp_path)
    # model_index.json names each class by the entry module of diffusers' generic loader; the package reads the
    # entries back as the modules that define the classes.
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["hf_vqvae_entry", "VQVAEPipeline"] and index["vqvae"] == ["hf_vqvae_entry", "VQVAEModel"]
    index = VQVAEPipeline.load_config(tmp_path)
    assert index["_class_name"] == "VQVAEPipeline"
    assert index["vqvae"] == ["hf_vqvae.models.vqvae.modeling_vqvae", "VQVAEModel"]
    assert index["prior"] == ["hf_vqvae.models.pixelcnn_prior.modeling_pixelcnn_prior", "PixelCNNPriorModel"]
    assert index["image_processor"] == ["hf_vqvae.models.vqvae.image_processing_vqvae", "VQVAEImageProcessor"]
    for folder, names in {"vqvae": {"config.json", "model.safetensors"}, "prior": {"config.json", "model.safetensors"}}.items():
        assert {path.name for path in (tmp_path / folder).iterdir()} == names | {"hf_vqvae_entry.py"}
    assert (tmp_path / "image_processor" / "preprocessor_config.json").exists()

    loaded = VQVAEPipeline.from_pretrained(tmp_path)
    before = pipeline(batch_size=2, class_labels=0, generator=seeded(), output_type="np")
    after = loaded(batch_size=2, class_labels=0, generator=seeded(), output_type="np")
    assert torch.equal(before.codes, after.codes)
    np.testing.assert_array_equal(before.images, after.images)

    other_prior = tiny_prior()
    replaced = VQVAEPipeline.from_pretrained(tmp_path, prior=other_prior)
    assert replaced.prior is other_prior


def test_loads_by_hub_id_from_the_offline_cache(offline_hub, tmp_path, pipeline):
    folder = tmp_path / "pipeline"
    pipeline.save_pretrained(folder)
    put_in_hub_cache(offline_hub, "org/vqvae-pipeline", folder)
    loaded = VQVAEPipeline.from_pretrained("org/vqvae-pipeline")
    before = pipeline(batch_size=2, class_labels=1, generator=seeded(), output_type="np")
    after = loaded(batch_size=2, class_labels=1, generator=seeded(), output_type="np")
    np.testing.assert_array_equal(before.images, after.images)
    with pytest.raises(Exception, match="(?i)offline|cannot find|not found|local"):
        VQVAEPipeline.from_pretrained("org/missing-pipeline")


def test_push_to_hub_uploads_the_pipeline_folder_and_card(recorded_uploads, pipeline):
    pipeline.push_to_hub("org/vqvae-pipeline", metrics={"bits_per_code": 3.2})
    upload = recorded_uploads[-1]
    assert upload["repo_id"] == "org/vqvae-pipeline"
    assert set(upload["files"]) == {
        "README.md", "model_index.json", "vqvae/config.json", "vqvae/model.safetensors", "prior/config.json",
        "prior/model.safetensors", "image_processor/preprocessor_config.json",
        *(f"{folder}hf_vqvae_entry.py" for folder in ("", "vqvae/", "prior/", "image_processor/")),
    }
    card = upload["files"]["README.md"].decode()
    assert "library_name: hf-vqvae" in card and "- class-conditional-image-generation" in card
    assert "pipeline_tag: unconditional-image-generation" in card  # the Hub has no class-conditional task
    assert 'VQVAEPipeline.from_pretrained("org/vqvae-pipeline")' in card and "| bits_per_code | 3.2 |" in card


def test_dtype_and_device_moves_like_diffusers(pipeline):
    pipeline.to(torch.bfloat16)
    assert pipeline.vqvae.encoder.conv_in.weight.dtype == torch.bfloat16
    assert pipeline.device == torch.device("cpu")
    out = pipeline(batch_size=2, class_labels=0, generator=seeded(), output_type="pt")
    assert out.images.dtype == torch.float32 and torch.isfinite(out.images).all()


def test_mismatched_components_fail_at_construction(tiny_model):
    with pytest.raises(ValueError, match="num_embeddings=32 but the VQ-VAE's codebook has 16"):
        VQVAEPipeline(vqvae=tiny_model, prior=tiny_prior(num_embeddings=32))
    with pytest.raises(ValueError, match="models 8x8 code grids .* latent grid is 4x4"):
        VQVAEPipeline(vqvae=tiny_model, prior=tiny_prior(grid_height=8, grid_width=8))


def test_bad_calls_raise_clear_errors(pipeline, tiny_model):
    with pytest.raises(ValueError, match="output_type must be one of"):
        pipeline(class_labels=0, output_type="jpeg")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        pipeline(batch_size=0, class_labels=0)
    with pytest.raises(ValueError, match="class-conditional"):
        pipeline(batch_size=1)
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        pipeline(batch_size=1, class_labels=5)
    unconditional = VQVAEPipeline(vqvae=tiny_model.eval(), prior=tiny_prior(num_classes=0))
    with pytest.raises(ValueError, match="unconditional prior"):
        unconditional(batch_size=1, class_labels=0)
    assert len(unconditional(batch_size=2, generator=seeded()).images) == 2


def test_sample_grid_has_one_row_per_class(pipeline, tmp_path):
    grid = pipeline.sample_grid(images_per_row=3, seed=0)
    label_width = grid.width - 3 * 16  # the class names, at the left of their rows
    assert grid.height == 2 * 16 and label_width > 0
    again = pipeline.sample_grid(images_per_row=3, seed=0)
    np.testing.assert_array_equal(np.asarray(grid), np.asarray(again))
    images = pipeline(batch_size=6, class_labels=[0, 0, 0, 1, 1, 1], generator=seeded(0)).images
    np.testing.assert_array_equal(np.asarray(grid)[16:32, label_width + 32 : label_width + 48], np.asarray(images[5]))


def test_sample_script_writes_its_grid(tmp_path, pipeline):
    import subprocess
    import sys
    from pathlib import Path

    pipeline.save_pretrained(tmp_path / "pipeline")
    script = Path(__file__).resolve().parents[1] / "scripts" / "sample.py"
    output = tmp_path / "grid.png"
    subprocess.run(
        [sys.executable, str(script), "--pipeline", str(tmp_path / "pipeline"), "--output", str(output),
         "--images_per_row", "5"],
        check=True, capture_output=True,
    )
    written = PIL.Image.open(output)
    assert written.height == 2 * 16 and written.width > 5 * 16


def test_a_pipeline_saved_before_the_layout_move_loads_and_generates_the_same():
    """A folder whose model_index.json names the 0.1.0 module paths (`hf_vqvae.modeling_vqvae`, ...)."""
    from pathlib import Path

    from safetensors.torch import load_file

    fixtures = Path(__file__).parent / "fixtures"
    index = json.loads((fixtures / "pipeline_saved_by_0.1.0" / "model_index.json").read_text())
    assert index["vqvae"] == ["hf_vqvae.modeling_vqvae", "VQVAEModel"]
    pipeline = VQVAEPipeline.from_pretrained(fixtures / "pipeline_saved_by_0.1.0")
    expected = load_file(fixtures / "pipeline_saved_by_0.1.0_output.safetensors")
    output = pipeline(batch_size=2, generator=torch.Generator().manual_seed(3), output_type="pt")
    assert torch.equal(output.codes, expected["codes"])
    torch.testing.assert_close(output.images, expected["images"])

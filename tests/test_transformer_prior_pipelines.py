"""Every pipeline that takes a PixelCNN prior takes a transformer prior too, and samples it through `generate()` with
its options (guidance, top-k, top-p): the image pipeline, the hierarchy's top prior, the speech pipeline."""

import functools
import json

import numpy as np
import pytest
import torch

from hf_vqvae import (
    AudioVQVAEConfig, AudioVQVAEModel, AudioVQVAEPipeline, HierarchicalVQVAEPipeline, TransformerPriorConfig,
    TransformerPriorModel, VQVAEPipeline,
)

from conftest import put_in_hub_cache, seeded
from test_audio_vqvae import TINY_AUDIO
from test_hierarchy import tiny_stage2
from test_pipeline import tiny_prior as tiny_pixelcnn_prior
from test_transformer_prior import TINY_LLAMA


def tiny_transformer_prior(num_embeddings: int, grid_height: int, grid_width: int, num_classes: int = 0, **fields):
    torch.manual_seed(0)
    config = TransformerPriorConfig(
        num_embeddings=num_embeddings, grid_height=grid_height, grid_width=grid_width, num_classes=num_classes,
        decoder_config=dict(TINY_LLAMA), **fields,
    )
    return TransformerPriorModel(config).eval()



@pytest.fixture
def pipeline(tiny_model) -> VQVAEPipeline:
    prior = tiny_transformer_prior(16, 4, 4, num_classes=2, id2label={0: "stripes", 1: "dots"}, label2id={"stripes": 0, "dots": 1})
    return VQVAEPipeline(vqvae=tiny_model.eval(), prior=prior)


def test_image_pipeline_samples_the_transformer_prior_with_its_options(pipeline):
    options = dict(guidance_scale=2.0, top_k=5, top_p=0.9, temperature=0.8)
    out = pipeline(class_labels=["dots", "stripes"], generator=seeded(), output_type="pt", **options)
    codes = pipeline.prior.sample(class_labels=[1, 0], generator=seeded(), **options)
    assert torch.equal(out.codes, codes)
    torch.testing.assert_close(out.images, (pipeline.vqvae.decode(codes).reconstruction / 2 + 0.5).clamp(0, 1))
    unguided = pipeline(class_labels=["dots", "stripes"], generator=seeded(), output_type="latent").images
    assert not torch.equal(unguided, codes)


def test_image_pipeline_with_a_transformer_prior_saves_loads_by_hub_id_and_pushes(tmp_path, offline_hub, recorded_uploads, pipeline):
    folder = tmp_path / "pipeline"
    pipeline.save_pretrained(folder)
    index = VQVAEPipeline.load_config(folder)
    assert index["prior"] == ["hf_vqvae.models.transformer_prior.modeling_transformer_prior", "TransformerPriorModel"]
    assert json.loads((folder / "model_index.json").read_text())["prior"] == ["hf_vqvae_entry", "TransformerPriorModel"]
    put_in_hub_cache(offline_hub, "org/transformer-pipeline", folder)
    loaded = VQVAEPipeline.from_pretrained("org/transformer-pipeline")
    assert isinstance(loaded.prior, TransformerPriorModel)
    kwargs = dict(class_labels="dots", batch_size=2, guidance_scale=1.5, output_type="np")
    np.testing.assert_array_equal(loaded(generator=seeded(), **kwargs).images, pipeline(generator=seeded(), **kwargs).images)

    pipeline.push_to_hub("org/transformer-pipeline")
    card = recorded_uploads[-1]["files"]["README.md"].decode()
    assert "a transformer prior (a llama causal language model) samples a 4x4 grid" in card.replace("\n", " ")
    assert "| `prior` | `TransformerPriorModel` | 2 llama layers of width 32, 2 classes |" in card
    assert "- transformer" in card and "- pixelcnn" not in card


def test_options_a_pixelcnn_prior_does_not_take_are_refused_by_name(tiny_model):
    pipeline = VQVAEPipeline(vqvae=tiny_model.eval(), prior=tiny_pixelcnn_prior())
    with pytest.raises(ValueError, match=r"a PixelCNNPriorModel, does not take guidance_scale, top_k \(a TransformerPriorModel does\)"):
        pipeline(class_labels=0, top_k=3, guidance_scale=2.0)
    plain = pipeline(class_labels=0, generator=seeded(), output_type="latent").images
    assert plain.shape == (1, 4, 4)
    # A scale of 1 guides nothing (the conditional distribution itself): every prior takes it, as diffusers' test_cfg asks.
    assert torch.equal(pipeline(class_labels=0, guidance_scale=1.0, generator=seeded(), output_type="latent").images, plain)
    with pytest.raises(ValueError, match=r"does not take guidance_scale"):
        pipeline(class_labels=0, guidance_scale=1.5)


def test_hierarchy_samples_its_top_codes_from_a_transformer_prior(tmp_path, tiny_model):
    prior = tiny_transformer_prior(8, 3, 1)
    pipeline = HierarchicalVQVAEPipeline(vqvae=tiny_model.eval(), stage2=tiny_stage2().eval(), prior=prior)
    out = pipeline(batch_size=2, generator=seeded(), top_k=3, output_type="latent")
    generator = seeded()
    top = prior.sample(2, generator=generator, top_k=3)
    assert torch.equal(out.latent_codes, top) and torch.equal(out.codes, pipeline.stage2.sample(top, generator=generator))
    pipeline.save_pretrained(tmp_path)
    loaded = HierarchicalVQVAEPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.prior, TransformerPriorModel)
    assert torch.equal(loaded(batch_size=2, generator=seeded(), top_k=3, output_type="latent").latent_codes, top)
    with pytest.raises(ValueError, match=r"num_embeddings=16 but the VQ-VAE's codebook has 8 codes"):
        HierarchicalVQVAEPipeline(vqvae=tiny_model, stage2=tiny_stage2(), prior=tiny_transformer_prior(16, 3, 1))


def test_speech_pipeline_generates_from_a_speaker_conditional_transformer_prior(tmp_path, monkeypatch):
    vqvae = AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO)).eval()
    prior = tiny_transformer_prior(16, 1, 6, num_classes=3)
    pipeline = AudioVQVAEPipeline(vqvae=vqvae, prior=prior)
    drawn = []

    @functools.wraps(prior.sample)
    def recording_sample(*args, **kwargs):
        drawn.append(prior_sample(*args, **kwargs))
        return drawn[-1]

    prior_sample = prior.sample
    monkeypatch.setattr(prior, "sample", recording_sample)
    audios = pipeline(speaker=["ann", "cy"], guidance_scale=2.0, top_p=0.8, generator=seeded(1)).audios
    assert audios.shape == (2, 6 * 4)
    expected = prior.sample(class_labels=[0, 2], guidance_scale=2.0, top_p=0.8, generator=seeded(1))
    assert torch.equal(drawn[0], expected)
    pipeline.save_pretrained(tmp_path)
    loaded = AudioVQVAEPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.prior, TransformerPriorModel)
    np.testing.assert_array_equal(loaded(speaker=["ann", "cy"], guidance_scale=2.0, top_p=0.8, generator=seeded(1)).audios, audios)
    with pytest.raises(ValueError, match="num_classes"):
        AudioVQVAEPipeline(vqvae=vqvae, prior=tiny_transformer_prior(16, 1, 6, num_classes=2))

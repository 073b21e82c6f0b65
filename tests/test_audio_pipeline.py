"""AudioVQVAEPipeline: reconstruction, conversion, decoding codes, generation with a one-row PixelCNN prior, save /
load / offline Hub cache round trips, pushes with cards."""

import json

import numpy as np
import pytest
import torch
from diffusers import AudioPipelineOutput

from conftest import put_in_hub_cache, seeded
from hf_vqvae import (
    AudioVQVAEConfig, AudioVQVAEFeatureExtractor, AudioVQVAEModel, AudioVQVAEPipeline, PixelCNNPriorConfig, PixelCNNPriorModel,
)
from test_audio_vqvae import TINY_AUDIO, speech_like


def tiny_prior(num_classes: int = 3, grid_width: int = 6, grid_height: int = 1, num_embeddings: int = 16):
    return PixelCNNPriorModel(PixelCNNPriorConfig(
        num_embeddings=num_embeddings, grid_height=grid_height, grid_width=grid_width, hidden_channels=8, num_layers=2,
        kernel_size=3, skip_channels=8, num_classes=num_classes,
    )).eval()


@pytest.fixture
def pipeline() -> AudioVQVAEPipeline:
    vqvae = AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO)).eval()
    return AudioVQVAEPipeline(vqvae=vqvae, prior=tiny_prior(), feature_extractor=AudioVQVAEFeatureExtractor.for_model(vqvae.config))



def test_reconstruction_and_conversion(pipeline):
    waveform = speech_like(1, 64)[0].numpy()
    output = pipeline(audio=waveform, sampling_rate=16000, speaker="ann", generator=seeded())
    assert isinstance(output, AudioPipelineOutput) and output.audios.shape == (1, 64)
    assert isinstance(output.audios, np.ndarray)
    again = pipeline(audio=waveform, sampling_rate=16000, speaker="ann", generator=seeded())
    assert np.array_equal(output.audios, again.audios)
    converted = pipeline(audio=waveform, sampling_rate=16000, speaker="cy", generator=seeded(), output_type="pt")
    assert isinstance(converted.audios, torch.Tensor)
    assert not np.array_equal(converted.audios.numpy(), output.audios)
    # The pipeline's conversion is the model's.
    input_values = torch.from_numpy(waveform)[None]
    direct = pipeline.vqvae.convert(input_values, "cy", generator=seeded()).audio_values
    assert torch.equal(converted.audios, direct)
    batch = pipeline(audio=[waveform, waveform[:40]], sampling_rate=16000, speaker=[0, 1], generator=seeded())
    assert batch.audios.shape == (2, 64)


def test_decoding_codes_and_unconditional_generation(pipeline):
    codes = torch.randint(0, 16, (2, 5))
    decoded = pipeline(codes=codes, speaker=1, generator=seeded()).audios
    assert decoded.shape == (2, 20)
    assert np.array_equal(decoded, pipeline.vqvae.decode(codes, 1, generator=seeded()).audio_values.numpy())
    generated = pipeline(batch_size=2, speaker=["ann", "bob"], generator=seeded(1)).audios
    assert generated.shape == (2, 6 * 4)
    assert np.array_equal(generated, pipeline(batch_size=2, speaker=["ann", "bob"], generator=seeded(1)).audios)
    (tuple_audios,) = pipeline(codes=codes, speaker=1, generator=seeded(), return_dict=False)
    assert np.array_equal(tuple_audios, decoded)


def test_without_batch_size_the_batch_follows_the_speakers(pipeline):
    by_speakers = pipeline(speaker=["ann", "bob", "ann"], generator=seeded(1)).audios
    assert by_speakers.shape == (3, 6 * 4)
    assert np.array_equal(by_speakers, pipeline(batch_size=3, speaker=["ann", "bob", "ann"], generator=seeded(1)).audios)
    assert pipeline(speaker=torch.tensor([0, 2]), generator=seeded(1)).audios.shape == (2, 6 * 4)
    assert pipeline(speaker="cy", generator=seeded(1)).audios.shape == (1, 6 * 4)
    with pytest.raises(ValueError, match=r"got 2 speakers for batch_size=3: pass one speaker for every clip or one per clip"):
        pipeline(batch_size=3, speaker=["ann", "bob"])


def test_a_feature_extractor_that_disagrees_with_the_model_is_refused_at_construction_and_load(tmp_path, pipeline):
    vqvae = pipeline.vqvae
    for rate, hop in ((8000, 4), (16000, 8), (8000, 8)):
        with pytest.raises(ValueError, match=rf"the feature extractor prepares audio at {rate} Hz in hops of {hop} samples "
                                             r"but the audio VQ-VAE takes 16000 Hz in hops of 4"):
            AudioVQVAEPipeline(vqvae=vqvae, feature_extractor=AudioVQVAEFeatureExtractor(sampling_rate=rate, hop_length=hop, segment_length=64))

    pipeline.save_pretrained(tmp_path)
    config_path = tmp_path / "feature_extractor" / "preprocessor_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "sampling_rate": 8000, "hop_length": 8}))
    with pytest.raises(ValueError, match=r"8000 Hz in hops of 8 samples but the audio VQ-VAE takes 16000 Hz .*"
                                         r"feature_extractor/preprocessor_config.json"):
        AudioVQVAEPipeline.from_pretrained(tmp_path)
    assert AudioVQVAEPipeline.from_pretrained(tmp_path, feature_extractor=None).feature_extractor is None


def test_bad_calls(pipeline):
    vqvae = pipeline.vqvae
    with pytest.raises(ValueError, match="needs a prior"):
        AudioVQVAEPipeline(vqvae=vqvae)(batch_size=1, speaker=0)
    with pytest.raises(ValueError, match="grid_height=1"):
        AudioVQVAEPipeline(vqvae=vqvae, prior=tiny_prior(grid_height=2))
    with pytest.raises(ValueError, match="num_embeddings=8 but the VQ-VAE's codebook has 16"):
        AudioVQVAEPipeline(vqvae=vqvae, prior=tiny_prior(num_embeddings=8))
    with pytest.raises(ValueError, match="num_classes equal to the VQ-VAE's num_speakers \\(3\\)"):
        AudioVQVAEPipeline(vqvae=vqvae, prior=tiny_prior(num_classes=2))
    with pytest.raises(ValueError, match="either audio= .* or codes="):
        pipeline(audio=np.zeros(64, np.float32), codes=torch.zeros(1, 2, dtype=torch.long), speaker=0)
    with pytest.raises(ValueError, match="22050 Hz but the model expects 16000 Hz"):
        pipeline(audio=np.zeros(640, np.float32), sampling_rate=22050, speaker=0)
    with pytest.raises(ValueError, match="output_type"):
        pipeline(codes=torch.zeros(1, 2, dtype=torch.long), speaker=0, output_type="pil")
    with pytest.raises(ValueError, match="unknown speaker name 'zed'"):
        pipeline(batch_size=1, speaker="zed")


def test_save_load_and_offline_hub_round_trip(tmp_path, offline_hub, pipeline):
    folder = tmp_path / "pipeline"
    pipeline.save_pretrained(folder)
    expected = pipeline(batch_size=1, speaker="bob", generator=seeded(2)).audios
    loaded = AudioVQVAEPipeline.from_pretrained(folder)
    assert np.array_equal(loaded(batch_size=1, speaker="bob", generator=seeded(2)).audios, expected)

    put_in_hub_cache(offline_hub, "org/tiny-speech", folder)
    from_hub = AudioVQVAEPipeline.from_pretrained("org/tiny-speech")
    assert np.array_equal(from_hub(batch_size=1, speaker="bob", generator=seeded(2)).audios, expected)
    vqvae = AudioVQVAEModel.from_pretrained("org/tiny-speech", subfolder="vqvae")
    assert vqvae.config.speaker_names == ["ann", "bob", "cy"]
    with pytest.raises(OSError):
        AudioVQVAEPipeline.from_pretrained("org/not-in-the-cache")


def test_a_pipeline_without_prior_saves_and_loads(tmp_path, pipeline):
    without_prior = AudioVQVAEPipeline(vqvae=pipeline.vqvae)
    without_prior.save_pretrained(tmp_path)
    loaded = AudioVQVAEPipeline.from_pretrained(tmp_path)
    assert loaded.prior is None
    codes = torch.randint(0, 16, (1, 3))
    assert np.array_equal(
        loaded(codes=codes, speaker=2, generator=seeded()).audios,
        without_prior(codes=codes, speaker=2, generator=seeded()).audios,
    )


def test_pushes_upload_the_folders_with_cards(recorded_uploads, pipeline):
    pipeline.push_to_hub("org/speech", dataset_name="flite multi-speaker speech", metrics={"validation_nats": 2.5})
    files = recorded_uploads[-1]["files"]
    assert {"model_index.json", "README.md", "vqvae/config.json", "vqvae/model.safetensors", "prior/config.json",
            "feature_extractor/preprocessor_config.json"} <= set(files)
    card = files["README.md"].decode()
    assert "AudioVQVAEPipeline.from_pretrained(\"org/speech\")" in card and "validation_nats" in card
    assert "3 speakers" in card and "audio-to-audio" in card

    pipeline.vqvae.push_to_hub("org/speech-vqvae", metrics={"bits_per_second": 1000}, image_path="figures.png")
    files = recorded_uploads[-1]["files"]
    card = files["README.md"].decode()
    assert "model.safetensors" in files and "`ann`" in card and "`cy`" in card and "![figures](figures.png)" in card
    assert 'target_speaker="cy"' in card


def test_non_finite_audio_and_tiny_temperatures_are_refused(pipeline):
    waveform = speech_like(1, 64)[0]
    waveform[7] = float("nan")
    with pytest.raises(ValueError, match=r"the audio's samples hold 1 NaN or Inf values"):
        pipeline(audio=waveform.numpy(), sampling_rate=16000, speaker=0)
    with pytest.raises(ValueError, match=r"input_values hold 1 NaN or Inf values"):
        pipeline(audio=waveform[None], speaker=0)  # input values, past the feature extractor
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0.001"):
        pipeline(codes=torch.zeros(1, 2, dtype=torch.long), speaker=0, temperature=1e-45)
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0.001"):
        pipeline(batch_size=1, speaker=0, temperature=1e-45)

"""The audio VQ-VAE: WaveNet causality and cached generation, speaker conditioning, the feature extractor, save/load
and bad input."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from hf_vqvae import (
    AudioVQVAEConfig,
    AudioVQVAEFeatureExtractor,
    AudioVQVAEModel,
    CheckpointMismatchError,
)
from hf_vqvae.layers.wavenet import WaveNet, receptive_field
from hf_vqvae.models.audio_vqvae import mu_law_decode, mu_law_encode
from hf_vqvae.models.audio_vqvae.loudness import gated_level_db, normalize_loudness
from conftest import record_drawn_logits
from model_contracts import assert_export_matches_eager, assert_gradients_reach, assert_onnx_export_matches_eager


TINY_AUDIO = dict(
    hidden_channels=16, downsampling_strides=[2, 2], num_embeddings=16, embedding_dim=4, residual_channels=8,
    gate_channels=8, skip_channels=8, num_layers=5, dilation_cycle=3, conditioning_channels=4, num_speakers=3,
    speaker_names=["ann", "bob", "cy"],
)


@pytest.fixture
def tiny_audio_model() -> AudioVQVAEModel:
    return AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO)).eval()


def speech_like(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Decaying harmonics with noise: not silence, not white noise."""
    generator = torch.Generator().manual_seed(seed)
    time = torch.arange(length) / 16000
    pitch = 100 + 100 * torch.rand(batch, 1, generator=generator)
    wave = sum(torch.sin(2 * torch.pi * k * pitch * time) / k for k in range(1, 5))
    return (0.3 * wave + 0.02 * torch.randn(batch, length, generator=generator)).clamp(-1, 1)


def test_mu_law_round_trip_is_close_and_monotonic():
    audio = torch.linspace(-1, 1, 1001)
    levels = mu_law_encode(audio)
    assert levels.min() == 0 and levels.max() == 255 and bool((levels.diff() >= 0).all())
    # Companding spends its levels near zero: the error is tiny for quiet samples, larger for loud ones.
    error = (mu_law_decode(levels) - audio).abs()
    assert error[abs(audio) < 0.01].max() < 3e-4 and error.max() < 0.025


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_wavenet_output_depends_only_on_past_samples(kernel_size):
    net = WaveNet(256, 8, 8, 8, num_layers=4, dilation_cycle=2, kernel_size=kernel_size, conditioning_channels=4,
                  conditioning_hop=4, global_channels=3)
    samples = torch.randint(0, 256, (2, 48))
    # Gradients through each sample's own embedding vector: the network's input at t is sample t - 1's.
    per_sample = net.input_embedding(samples).transpose(1, 2).detach().requires_grad_()
    inputs_embeds = torch.nn.functional.pad(per_sample, (1, 0))[:, :, :-1]
    logits = net(conditioning=torch.randn(2, 4, 12), global_conditioning=torch.randn(2, 3), inputs_embeds=inputs_embeds)
    field = receptive_field(4, 2, kernel_size)
    for time in (0, 5, 30, 47):
        per_sample.grad = None
        logits[:, :, time].sum().backward(retain_graph=True)
        influence = per_sample.grad.abs().sum(dim=(0, 1))
        assert influence[time:].sum() == 0, f"logits at {time} depend on the current or a future sample"
        if time:
            assert influence[time - 1] > 0 and influence[max(0, time - field) : time].gt(0).all()
        assert influence[: max(0, time - field)].sum() == 0


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize(
    "kernel_size, conditioning_channels, global_channels",
    [(2, 0, 0), (3, 0, 3), (2, 4, 0), (3, 4, 3)],
    ids=["unconditional", "speaker", "latents", "speaker-and-latents"],
)
def test_cached_generation_equals_plain_generation(
    batch_size, kernel_size, conditioning_channels, global_channels, sampler_step
):
    torch.manual_seed(0)
    net = WaveNet(256, 8, 8, 8, num_layers=5, dilation_cycle=3, kernel_size=kernel_size,
                  conditioning_channels=conditioning_channels, conditioning_hop=4, global_channels=global_channels)
    generator = torch.Generator().manual_seed(1)
    conditioning = torch.randn(batch_size, 4, 20, generator=generator) if conditioning_channels else None
    speaker = torch.randn(batch_size, 3, generator=generator) if global_channels else None
    cached = net.generate(batch_size, 80, conditioning, speaker, generator=torch.Generator().manual_seed(3))
    plain = net.generate(batch_size, 80, conditioning, speaker, generator=torch.Generator().manual_seed(3),
                         use_cache=False)
    assert net.receptive_field < 80  # the plain sampler's window slides
    assert torch.equal(cached, plain)
    assert len(cached.unique()) > 10


def test_cached_generation_on_two_threads_equals_plain_generation(sampler_step, every_step_on_all_threads):
    """Every sample on two threads (the eager step: each product split; the compiled one: the batch split); the
    samples do not change."""
    torch.manual_seed(0)
    net = WaveNet(256, 8, 8, 8, num_layers=5, dilation_cycle=3, conditioning_channels=4, conditioning_hop=4)
    conditioning = torch.randn(4, 4, 10, generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cached = net.generate(4, 40, conditioning, generator=torch.Generator().manual_seed(3))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    plain = net.generate(4, 40, conditioning, generator=torch.Generator().manual_seed(3), use_cache=False)
    assert torch.equal(cached, plain)


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_draws_from_the_teacher_forced_logits(monkeypatch, use_cache, sampler_step):
    """Each sample is drawn from the logits `forward` gives the generated sequence at that time (conditioning
    frames and speaker lined up), not merely from the same logits as the other generator."""
    net = WaveNet(256, 8, 8, 8, num_layers=5, dilation_cycle=3, kernel_size=3, conditioning_channels=4,
                  conditioning_hop=4, global_channels=3)
    conditioning, speaker = torch.randn(2, 4, 20), torch.randn(2, 3)
    recorded = record_drawn_logits(monkeypatch)
    samples = net.generate(2, 80, conditioning, speaker, generator=torch.Generator().manual_seed(0), use_cache=use_cache)
    with torch.no_grad():
        teacher_forced = net(samples, conditioning, speaker)
    torch.testing.assert_close(torch.stack(recorded, dim=-1), teacher_forced, atol=1e-5, rtol=1e-5)


def test_model_decode_cached_equals_plain_and_the_speaker_changes_the_output(tiny_audio_model):
    model = tiny_audio_model
    codes = torch.randint(0, 16, (1, 12))
    generated = {}
    for speaker in ("ann", "cy"):
        for use_cache in (True, False):
            generated[speaker, use_cache] = model.decode(
                codes, speaker, generator=torch.Generator().manual_seed(0), use_cache=use_cache
            ).audio_values
    assert generated["ann", True].shape == (1, 48)
    assert torch.equal(generated["ann", True], generated["ann", False])
    assert torch.equal(generated["cy", True], generated["cy", False])
    assert not torch.equal(generated["ann", True], generated["cy", True])
    audio = speech_like(1, 64)
    logits = [model(audio, torch.tensor([speaker])).logits for speaker in range(3)]
    assert (logits[0] - logits[1]).abs().max() > 1e-3 and (logits[1] - logits[2]).abs().max() > 1e-3


def test_forward_encode_and_convert_shapes(tiny_audio_model):
    model = tiny_audio_model
    audio = speech_like(2, 64)
    output = model(audio, speaker_ids=torch.tensor([0, 2]))
    assert output.logits.shape == (2, 256, 64) and output.indices.shape == (2, 16)
    assert torch.allclose(output.loss, output.reconstruction_loss + 0.25 * output.commitment_loss)
    assert torch.equal(model.encode(audio).indices, output.indices)
    converted = model.convert(audio, target_speaker=["bob", 1], generator=torch.Generator().manual_seed(0))
    assert converted.audio_values.shape == (2, 64) and converted.audio_values.abs().max() <= 1
    assert model(audio, torch.tensor([0, 1]), return_dict=False)[0].ndim == 0


def test_downsampling_is_configurable():
    config = AudioVQVAEConfig(**{**TINY_AUDIO, "downsampling_strides": [4, 2, 3]})
    assert config.hop_length == 24
    assert AudioVQVAEModel(config).encode(speech_like(1, 96)).indices.shape == (1, 4)
    paper = AudioVQVAEConfig.from_preset("vctk")
    assert paper.hop_length == 64 and paper.num_embeddings == 512 and paper.num_speakers == 109


def test_a_single_speaker_model_takes_no_speaker():
    model = AudioVQVAEModel(AudioVQVAEConfig(**{**TINY_AUDIO, "num_speakers": 0, "speaker_names": None}))
    assert model.decoder.speaker_embedding is None
    assert model.decode(torch.zeros(1, 2, dtype=torch.long)).audio_values.shape == (1, 8)
    with pytest.raises(ValueError, match="no speaker conditioning"):
        model.decode(torch.zeros(1, 2, dtype=torch.long), speaker_ids=0)
    with pytest.raises(ValueError, match="speaker conversion needs"):
        model.convert(speech_like(1, 16), target_speaker=0)


def test_save_load_round_trip_with_the_auto_classes(tmp_path, tiny_audio_model):
    model = tiny_audio_model
    AudioVQVAEFeatureExtractor.for_model(model.config, segment_length=64).save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(loaded) is AudioVQVAEModel and type(extractor) is AudioVQVAEFeatureExtractor
    assert extractor.hop_length == 4 and extractor.segment_length == 64
    assert AutoConfig.from_pretrained(tmp_path).speaker_names == ["ann", "bob", "cy"]
    audio = speech_like(1, 64)
    torch.testing.assert_close(loaded(audio, torch.tensor([1])).logits, model(audio, torch.tensor([1])).logits)
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(
        loaded.convert(audio, "cy", generator=generator()).audio_values,
        model.convert(audio, "cy", generator=generator()).audio_values,
    )


def test_loading_with_another_speaker_count_fails_clearly(tmp_path, tiny_audio_model):
    tiny_audio_model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointMismatchError, match="speaker_embedding"):
        AudioVQVAEModel.from_pretrained(tmp_path, num_speakers=5, speaker_names=None)
    with pytest.raises(CheckpointMismatchError, match="speaker_embedding.*not in the model"):
        AudioVQVAEModel.from_pretrained(tmp_path, num_speakers=0, speaker_names=None)


def test_quantizer_stays_fp32_in_half_precision(tmp_path, tiny_audio_model):
    tiny_audio_model.save_pretrained(tmp_path)
    loaded = AudioVQVAEModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.quantizer.embedding.dtype == torch.float32
    assert loaded.decoder.wavenet.input_embedding.weight.dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------------ feature extractor


def test_feature_extractor_pads_to_whole_latents_and_crops_segments():
    extractor = AudioVQVAEFeatureExtractor(hop_length=64, segment_length=256, do_normalize_loudness=False)
    batch = extractor([np.full(100, 0.5, np.float32), np.full(300, -0.5)], sampling_rate=16000, return_tensors="pt")
    assert batch["input_values"].shape == (2, 320)
    assert batch["input_values"][0, 100:].abs().sum() == 0 and batch["input_values"][0, :100].eq(0.5).all()
    cropped = extractor(np.zeros(1000, np.float32), sampling_rate=16000, truncation=True, return_tensors="pt")
    assert cropped["input_values"].shape == (1, 256)
    pcm = extractor(np.array([16384, -32768] * 32, dtype=np.int16), sampling_rate=16000, return_tensors="pt")
    assert torch.allclose(pcm["input_values"][0, :2], torch.tensor([0.5, -1.0]))


def test_feature_extractor_resamples_only_when_allowed(tmp_path):
    extractor = AudioVQVAEFeatureExtractor(hop_length=64)
    tone = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    with pytest.raises(ValueError, match="8000 Hz but the model expects 16000 Hz.*do_resample=True"):
        extractor(tone, sampling_rate=8000)
    resampled = extractor(tone, sampling_rate=8000, do_resample=True, return_tensors="np")["input_values"][0]
    assert resampled.shape == (16000,)
    # Still a 440 Hz tone after resampling.
    spectrum = np.abs(np.fft.rfft(resampled))
    assert abs(np.argmax(spectrum) * 16000 / len(resampled) - 440) < 2
    AudioVQVAEFeatureExtractor(do_resample=True).save_pretrained(tmp_path)
    assert AudioVQVAEFeatureExtractor.from_pretrained(tmp_path).do_resample is True


# ------------------------------------------------------------------------------------------------ loudness


def test_gated_level_is_the_level_of_the_speech_not_of_its_pauses():
    sine = 0.1 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)
    assert gated_level_db(sine, 16000) == pytest.approx(20 * np.log10(0.1 / np.sqrt(2)), abs=0.05)
    # A second of a faint hiss on each side changes little (the blocks that straddle an edge count): the gates
    # leave the hiss out.
    hiss = 1e-3 * np.random.default_rng(0).standard_normal(48000)
    hiss[16000:32000] += sine
    assert gated_level_db(hiss, 16000) == pytest.approx(gated_level_db(sine, 16000), abs=0.5)
    assert 20 * np.log10(np.sqrt((hiss**2).mean())) < gated_level_db(sine, 16000) - 4
    assert gated_level_db(np.zeros(1000), 16000) == -np.inf
    # A clip shorter than one 100 ms block is measured as one block.
    assert gated_level_db(sine[:400], 16000) == pytest.approx(-23.0, abs=0.3)


def test_normalize_loudness_reaches_the_target_without_clipping():
    speech = speech_like(1, 16000)[0].numpy()
    for gain in (0.01, 1.0):
        scaled, applied = normalize_loudness(gain * speech, 16000, -20.0)
        assert gated_level_db(scaled, 16000) == pytest.approx(-20.0, abs=0.01)
        assert applied == pytest.approx(10 ** ((-20.0 - gated_level_db(gain * speech, 16000)) / 20))
    # A target the peaks cannot reach stops at full scale instead of clipping.
    loud, _ = normalize_loudness(speech, 16000, -3.0)
    assert np.abs(loud).max() == pytest.approx(1.0, abs=1e-6) and gated_level_db(loud, 16000) < -3.0
    # Silence is left alone rather than amplified.
    silent, applied = normalize_loudness(np.zeros(800, np.float32), 16000, -20.0)
    assert applied == 1.0 and not silent.any()


def test_feature_extractor_gives_a_quiet_and_a_loud_recording_the_same_input_values():
    extractor = AudioVQVAEFeatureExtractor(hop_length=4)
    speech = speech_like(1, 8000)[0].numpy()
    quiet, loud = extractor([0.02 * speech, 0.8 * speech], sampling_rate=16000, return_tensors="pt")["input_values"]
    assert torch.allclose(quiet, loud, atol=1e-6)
    assert gated_level_db(quiet.numpy(), 16000) == pytest.approx(-20.0, abs=0.01)
    as_recorded = AudioVQVAEFeatureExtractor(hop_length=4, do_normalize_loudness=False)(
        0.02 * speech, sampling_rate=16000, return_tensors="pt")["input_values"][0]
    assert torch.allclose(as_recorded, torch.from_numpy(0.02 * speech))


def test_models_and_extractors_saved_before_loudness_normalisation_keep_their_behaviour(tmp_path):
    """A config / preprocessor_config.json without the new fields (written by 0.2.0) loads with normalisation off;
    new ones default to on, and `for_model` follows the model."""
    model = AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO))
    model.save_pretrained(tmp_path)
    AudioVQVAEFeatureExtractor.for_model(model.config).save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).normalize_loudness is True
    assert AutoFeatureExtractor.from_pretrained(tmp_path).do_normalize_loudness is True
    for name, field in (("config.json", "normalize_loudness"), ("preprocessor_config.json", "do_normalize_loudness")):
        saved = json.loads((tmp_path / name).read_text())
        del saved[field], saved["loudness_target_db"]
        (tmp_path / name).write_text(json.dumps(saved))
    old_config = AutoConfig.from_pretrained(tmp_path)
    assert old_config.normalize_loudness is False
    assert AudioVQVAEModel.from_pretrained(tmp_path).config.normalize_loudness is False
    assert AudioVQVAEFeatureExtractor.from_pretrained(tmp_path).do_normalize_loudness is False
    assert AudioVQVAEFeatureExtractor.for_model(old_config).do_normalize_loudness is False
    assert AudioVQVAEFeatureExtractor.from_pretrained(tmp_path, do_normalize_loudness=True).do_normalize_loudness is True


# ------------------------------------------------------------------------------------------------ codes as a control


def test_teacher_forced_bits_are_the_training_loss_and_depend_on_the_codes(tiny_audio_model):
    audio, speakers = speech_like(3, 64, seed=4), torch.tensor([0, 1, 2])
    output = tiny_audio_model(audio, speakers)
    own = tiny_audio_model.teacher_forced_bits(audio, speakers)
    assert own.shape == (3,)
    assert own.mean() * np.log(2) == pytest.approx(output.reconstruction_loss.item(), rel=1e-5)
    other = tiny_audio_model.teacher_forced_bits(audio, speakers, (output.indices + 5) % 16)
    assert not torch.allclose(own, other)
    with pytest.raises(ValueError, match=r"codes of shape \(3, 8\) do not match audio of shape \(3, 64\)"):
        tiny_audio_model.teacher_forced_bits(audio, speakers, output.indices[:, :8])


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((2, 640), np.float32), "expected mono audio.*average the channels"),
        (np.zeros((640, 2), np.float32), "expected mono audio"),
        (np.zeros(0, np.float32), "empty audio clip"),
        (np.zeros(10, np.float32), "10 samples, shorter than one latent"),
        (np.array(["a", "b"]), "floats in \\[-1, 1\\] or integer PCM"),
    ],
)
def test_feature_extractor_bad_input(audio, message):
    with pytest.raises(ValueError, match=message):
        AudioVQVAEFeatureExtractor(hop_length=64)(audio, sampling_rate=16000)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda: speech_like(1, 2), "2 samples, shorter than one latent \\(4 samples"),
        (lambda: speech_like(1, 30), "multiple of hop_length=4"),
        (lambda: speech_like(2, 64).unsqueeze(0).expand(2, 2, 64), "mono audio, got \\(2, 2, 64\\).*average"),
        (lambda: torch.zeros(1, 64, dtype=torch.int16), "floats in \\[-1, 1\\]"),
    ],
)
def test_model_bad_audio(tiny_audio_model, make_input, message):
    with pytest.raises(ValueError, match=message):
        tiny_audio_model(make_input(), speaker_ids=torch.tensor([0]))


@pytest.mark.parametrize(
    ("speaker", "message"),
    [
        (3, "unknown speaker id: ids must lie in \\[0, 3\\)"),
        (-1, "unknown speaker id"),
        ("dan", "unknown speaker name 'dan'; the model knows \\['ann', 'bob', 'cy'\\]"),
        (None, "conditioned on 3 speakers: pass a speaker id in \\[0, 3\\) or a name"),
        ([0, 1, 2], "one speaker for all clips or one per clip \\(1\\)"),
        (1.5, "integer id or a name"),
    ],
)
def test_unknown_speakers(tiny_audio_model, speaker, message):
    with pytest.raises(ValueError, match=message):
        tiny_audio_model.decode(torch.zeros(1, 3, dtype=torch.long), speaker)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (torch.tensor([[0, 16]]), "codes must lie in \\[0, 16\\).*\\[0, 16\\]"),
        (torch.tensor([[-1, 2]]), "codes must lie in \\[0, 16\\)"),
        (torch.zeros(1, 0, dtype=torch.long), "at least one latent"),
        (torch.zeros(2, 3), "integer tensor of shape \\(batch, latents\\)"),
        (torch.zeros(3, dtype=torch.long), "integer tensor of shape \\(batch, latents\\)"),
    ],
)
def test_codes_out_of_range(tiny_audio_model, codes, message):
    with pytest.raises(ValueError, match=message):
        tiny_audio_model.decode(codes, 0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(downsampling_strides=[]), "downsampling_strides must be a non-empty list"),
        (dict(downsampling_strides=[2, 0]), "downsampling_strides"),
        (dict(num_speakers=2, speaker_names=["a"]), "1 names but num_speakers is 2"),
        (dict(num_speakers=2, speaker_names=["a", "a"]), "must be distinct"),
        (dict(kernel_size=1), "kernel_size must be an integer >= 2"),
        (dict(num_speakers=-1), "num_speakers must be an integer >= 0"),
        (dict(update_rule="adam"), "update_rule must be one of"),
        (dict(loudness_target_db=0), "loudness_target_db must be a level in dBFS between -60 and -3, got 0"),
        (dict(normalize_loudness="yes"), "normalize_loudness must be true or false, got 'yes'"),
    ],
)
def test_config_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        AudioVQVAEConfig(**{**TINY_AUDIO, "speaker_names": None, "num_speakers": 0, **fields})


def test_non_finite_audio_is_refused_by_the_model_and_the_feature_extractor(tiny_audio_model):
    audio = speech_like(2, 64)
    audio[1, 5] = float("nan")
    audio[0, 9] = float("inf")
    for mode in (tiny_audio_model.eval, tiny_audio_model.train):
        mode()
        with pytest.raises(ValueError, match=r"input_values hold 2 NaN or Inf values \(of 128\); audio samples must be finite"):
            tiny_audio_model(audio, speaker_ids=0)
    tiny_audio_model.eval()
    for refused in (tiny_audio_model.encode, lambda values: tiny_audio_model.convert(values, "bob")):
        with pytest.raises(ValueError, match="NaN or Inf"):
            refused(audio)
    with pytest.raises(ValueError, match=r"the audio's samples hold 1 NaN or Inf values \(of 64\)"):
        AudioVQVAEFeatureExtractor(hop_length=4)(audio[1].numpy(), sampling_rate=16000)


def test_audio_far_outside_minus_one_one_is_refused_and_a_little_overshoot_is_clipped_with_a_warning(
    tiny_audio_model, caplog
):
    audio = speech_like(1, 64)
    with pytest.raises(ValueError, match=r"input_values must lie in \[-1, 1\], got values up to 1\.\d+e\+04 .*16-bit PCM"):
        tiny_audio_model(audio * 32767, speaker_ids=0)
    tiny_audio_model(audio * 1.5, speaker_ids=0)  # a little overshoot is the mu-law encoder's to clip

    # At the clip's own level, so that the clipped samples are what comes out.
    extractor = AudioVQVAEFeatureExtractor(hop_length=4, do_normalize_loudness=False)
    with pytest.raises(ValueError, match=r"the audio's samples must lie in \[-1, 1\], got values up to 2e\+04 .*divide 16-bit PCM by 32768"):
        extractor(np.full(64, 20000.0, np.float32), sampling_rate=16000)
    loud = np.linspace(-1.25, 1.25, 64, dtype=np.float32)
    with caplog.at_level("WARNING"):
        clipped = extractor(loud, sampling_rate=16000, return_tensors="np")["input_values"][0]
    assert "reach 1.25 in magnitude: 14 samples beyond [-1, 1] are clipped" in caplog.text  # 7 at each end
    np.testing.assert_array_equal(clipped, np.clip(loud, -1, 1))
    caplog.clear()
    extractor(np.linspace(-1, 1, 64, dtype=np.float32), sampling_rate=16000)
    assert "clipped" not in caplog.text


def test_empty_batches_are_refused_as_such(tiny_audio_model):
    with pytest.raises(ValueError, match=r"empty batch: input_values holds no clips \(batch size 0\)"):
        tiny_audio_model(torch.rand(0, 64), speaker_ids=0)
    with pytest.raises(ValueError, match="empty batch: input_values"):
        tiny_audio_model.encode(torch.rand(0, 64))
    with pytest.raises(ValueError, match=r"empty batch: codes holds no sequences of codes \(batch size 0\)"):
        tiny_audio_model.decode(torch.zeros(0, 2, dtype=torch.long), 0)


@pytest.mark.parametrize("temperature", [1e-45, 1e-4, 0.0, -1.0, float("inf"), "1"])
def test_decoding_refuses_temperatures_below_the_shared_minimum(tiny_audio_model, temperature):
    codes = torch.randint(0, 16, (1, 3))
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0.001"):
        tiny_audio_model.decode(codes, 0, temperature=temperature)
    assert tiny_audio_model.decode(codes, 0, temperature=1e-3).audio_values.shape == (1, 12)


def test_numpy_integers_are_speaker_ids(tiny_audio_model):
    audio = speech_like(2, 64)
    expected = tiny_audio_model.convert(audio, 1, generator=torch.Generator().manual_seed(0)).audio_values
    for speaker in (np.int64(1), [np.int32(1), 1], np.array([1, 1])):
        converted = tiny_audio_model.convert(audio, speaker, generator=torch.Generator().manual_seed(0)).audio_values
        assert torch.equal(converted, expected)
    with pytest.raises(ValueError, match="a speaker is an integer id or a name, got np.True_"):
        tiny_audio_model.convert(audio, np.bool_(True))


@pytest.mark.parametrize("sampling_rate", ["16000", 0, -8000, 16000.5, True])
def test_feature_extractor_names_a_bad_sampling_rate(sampling_rate):
    extractor = AudioVQVAEFeatureExtractor(hop_length=4)
    for do_resample in (False, True):
        with pytest.raises(ValueError, match=rf"sampling_rate \(samples per second, in Hz\) must be a positive integer, got {sampling_rate!r}"):
            extractor(np.zeros(64, np.float32), sampling_rate=sampling_rate, do_resample=do_resample)
    for rate in (np.int64(16000), 16000.0):
        assert extractor(np.zeros(64, np.float32), sampling_rate=rate, return_tensors="np")["input_values"].shape == (1, 64)


@pytest.mark.parametrize(
    "field, value", [("hop_length", 0), ("hop_length", "64"), ("sampling_rate", "abc"), ("sampling_rate", -5), ("segment_length", 0)]
)
def test_feature_extractor_settings_are_checked_when_built_and_when_loaded(tmp_path, field, value):
    message = rf"AudioVQVAEFeatureExtractor.{field} must be a positive integer, got {value!r}"
    with pytest.raises(ValueError, match=message):
        AudioVQVAEFeatureExtractor(**{field: value})
    AudioVQVAEFeatureExtractor(hop_length=4, segment_length=64).save_pretrained(tmp_path)
    saved = tmp_path / "preprocessor_config.json"
    saved.write_text(json.dumps({**json.loads(saved.read_text()), field: value}))
    with pytest.raises(ValueError, match=message):
        AudioVQVAEFeatureExtractor.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("loudness_target_db", 0.0, "must be a level in dBFS between -60 and -3, got 0.0"),
        ("loudness_target_db", "-20", "must be a level in dBFS between -60 and -3, got '-20'"),
        ("do_normalize_loudness", "yes", "must be true or false, got 'yes'"),
    ],
)
def test_the_loudness_settings_are_checked_by_the_config_and_the_feature_extractor(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=rf"AudioVQVAEFeatureExtractor.{field} {message}"):
        AudioVQVAEFeatureExtractor(**{field: value})
    AudioVQVAEFeatureExtractor(hop_length=4, segment_length=64).save_pretrained(tmp_path)
    saved = tmp_path / "preprocessor_config.json"
    saved.write_text(json.dumps({**json.loads(saved.read_text()), field: value}))
    with pytest.raises(ValueError, match=rf"AudioVQVAEFeatureExtractor.{field} {message}"):
        AudioVQVAEFeatureExtractor.from_pretrained(tmp_path)
    config_field = field.removeprefix("do_")
    with pytest.raises(ValueError, match=rf"AudioVQVAEConfig.{config_field} {message}"):
        AudioVQVAEConfig(**{config_field: value})


# ------------------------------------------------------------------------------------------------ contracts


def test_forward_returns_encoder_and_decoder_hidden_states_by_argument_or_config(tiny_audio_model):
    audio = speech_like(2, 64)
    plain = tiny_audio_model(audio, 0)
    assert plain.encoder_hidden_states is None and plain.decoder_hidden_states is None
    output = tiny_audio_model(audio, 0, output_hidden_states=True)
    # Each strided convolution (stride 2, 16 channels), then z_e (4 dimensions, one per 4 samples).
    assert [tuple(state.shape) for state in output.encoder_hidden_states] == [(2, 16, 32), (2, 16, 16), (2, 4, 16)]
    torch.testing.assert_close(output.encoder_hidden_states[-1], tiny_audio_model.encode(audio).latents)
    # The WaveNet's input (the embedded previous samples) and the residual stream after each of its 5 blocks.
    wavenet = tiny_audio_model.decoder.wavenet
    assert len(output.decoder_hidden_states) == 6 and all(state.shape == (2, 8, 64) for state in output.decoder_hidden_states)
    torch.testing.assert_close(output.decoder_hidden_states[0], wavenet.embed(mu_law_encode(audio)))
    assert not torch.allclose(output.decoder_hidden_states[1], output.decoder_hidden_states[0])
    torch.testing.assert_close(output.logits, plain.logits)
    assert_gradients_reach(output.encoder_hidden_states + output.decoder_hidden_states, output.loss)

    flagged = AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO, output_hidden_states=True)).eval()
    assert len(flagged(audio, 0).decoder_hidden_states) == 6
    assert len(flagged(audio, 0, return_dict=False)) == len(tiny_audio_model(audio, 0, return_dict=False)) + 2


def test_exports_with_speakers_and_the_exported_program_matches_eager(tiny_audio_model):
    assert_export_matches_eager(
        tiny_audio_model, dict(input_values=speech_like(2, 64), speaker_ids=torch.tensor([0, 2])),
        dict(input_values=speech_like(2, 64, seed=1), speaker_ids=torch.tensor([1, 1])),
    )
    with pytest.raises(ValueError, match="unknown speaker id"):
        tiny_audio_model(speech_like(2, 64), speaker_ids=torch.tensor([0, 3]))  # eager keeps its value checks


@pytest.mark.slow
def test_exports_to_onnx_with_speakers_and_onnxruntime_matches_eager(tmp_path, tiny_audio_model):
    inputs = dict(input_values=speech_like(2, 64), speaker_ids=torch.tensor([0, 2]))
    assert_onnx_export_matches_eager(tmp_path / "audio_vqvae.onnx", tiny_audio_model, inputs)

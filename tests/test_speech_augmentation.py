"""Noise and reverberation of training speech (`data.speech_augmentation`) and the training loader that applies them."""

import numpy as np
import pytest
import torch

from hf_vqvae.data.speech import SpeechDataArguments, SpeechDatasets, load_speech_splits, speech_dataloader, undecoded_audio
from hf_vqvae.data.speech_augmentation import SpeechAugmentation, add_noise, coloured_noise, room_response
from hf_vqvae.models.audio_vqvae.loudness import gated_level_db

from test_speech_data import speech_folder, tone  # noqa: F401


RATE = 16000


def power_db(noise: np.ndarray) -> float:
    """The level of stationary noise, on the gated level's scale (mean square, dB)."""
    return float(10 * np.log10(np.mean(np.asarray(noise, dtype=np.float64) ** 2)))


def speech_like(seconds: float = 1.0) -> np.ndarray:
    """A tone switched on and off four times a second: speech's pauses, which the gated level skips."""
    waveform = tone(180.0, seconds, RATE)
    return waveform * (np.arange(len(waveform)) // (RATE // 8) % 2 == 0)


@pytest.mark.parametrize("snr_db, exponent", [(20.0, 0.0), (5.0, 1.0), (30.0, 2.0)])
def test_noise_is_added_at_the_asked_snr_below_the_speech_level(snr_db, exponent):
    clean = speech_like()
    noisy = add_noise(clean, snr_db, np.random.default_rng(0), RATE, exponent)
    measured = gated_level_db(clean, RATE) - power_db(noisy - clean)
    assert measured == pytest.approx(snr_db, abs=0.1)


def test_noise_colour_follows_its_exponent():
    def low_to_high_power(exponent):
        spectrum = np.abs(np.fft.rfft(coloured_noise(RATE, exponent, np.random.default_rng(0)))) ** 2
        return spectrum[10:100].mean() / spectrum[4000:8000].mean()

    assert low_to_high_power(0.0) == pytest.approx(1.0, rel=0.3)
    assert 10 < low_to_high_power(1.0) < low_to_high_power(2.0)


def test_room_response_has_unit_energy_and_decays_60_db_in_its_rt60():
    response = room_response(0.4, np.random.default_rng(0), RATE, tail_energy=0.5)
    assert (response**2).sum() == pytest.approx(1.0) and response[0] ** 2 == pytest.approx(0.5)
    early, late = slice(1, 801), slice(4801, 5601)  # 50 ms windows centred 0.025 s and 0.325 s in
    decay_db = 10 * np.log10((response[early] ** 2).mean() / (response[late] ** 2).mean())
    assert decay_db == pytest.approx(60 * 0.3 / 0.4, abs=3)


def test_augmentation_is_seeded_and_its_probabilities_switch_it():
    clean = speech_like()
    both = SpeechAugmentation(noise_probability=1.0, reverb_probability=1.0)
    first = both(clean, RATE, np.random.default_rng(3))
    assert np.array_equal(first, both(clean, RATE, np.random.default_rng(3)))
    assert not np.array_equal(first, both(clean, RATE, np.random.default_rng(4)))
    assert not np.allclose(first, clean, atol=1e-3)
    assert np.array_equal(SpeechAugmentation()(clean, RATE, np.random.default_rng(3)), clean)
    assert not SpeechAugmentation().active and both.active


@pytest.mark.parametrize(
    "settings, flag",
    [
        ({"noise_probability": 1.5}, "--noise_probability"),
        ({"reverb_probability": -0.1}, "--reverb_probability"),
        ({"noise_snr_db": [30.0, 10.0]}, "--noise_snr_db"),
        ({"noise_snr_db": [10.0]}, "--noise_snr_db"),
        ({"reverb_rt60_seconds": [0.0, 0.5]}, "--reverb_rt60_seconds"),
        ({"reverb_rt60_seconds": [0.2, float("nan")]}, "--reverb_rt60_seconds"),
    ],
)
def test_bad_augmentation_settings_are_refused_by_name(settings, flag):
    with pytest.raises(ValueError, match=f"{flag} must .* got "):
        SpeechDataArguments(**settings)


def test_the_loader_noises_training_clips_at_the_asked_snr_seeded(speech_folder):  # noqa: F811
    """Whole 0.5 s clips (the crop is the clip), noised at exactly 20 dB, not normalised: the difference from the
    clean batch is noise 20 dB below each clip's level, and the same seed draws the same noise."""
    splits, name = load_speech_splits(train_data_dir=str(speech_folder))
    train = undecoded_audio(splits["train"], "audio").filter(lambda row: not row["audio"]["path"].endswith("broken.wav"))
    datasets = SpeechDatasets(train, train, "audio", None, None, name)
    noise_only = SpeechDataArguments(noise_probability=1.0, noise_snr_db=[20.0, 20.0]).augmentation

    def first_batch(seed, augmentation=None):
        loader = speech_dataloader(datasets, segment_length=8000, batch_size=4, seed=seed, augmentation=augmentation)
        return next(iter(loader))["input_values"]

    clean, noisy = first_batch(0), first_batch(0, noise_only)
    for clip, noisy_clip in zip(clean.numpy(), noisy.numpy()):
        assert gated_level_db(clip, RATE) - power_db(noisy_clip - clip) == pytest.approx(20.0, abs=0.1)
    assert torch.equal(noisy, first_batch(0, noise_only)) and not torch.equal(noisy, first_batch(1, noise_only))

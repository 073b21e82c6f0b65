"""Measures of speech used by the audio benchmarks (and the slow conversion test): log-mel spectra and their
distance, a small speaker classifier trained on real audio, a phoneme-from-code predictor, teacher-forced bits
with a crop's own codes against another crop's, and the held-out conditions (level, noise, reverberation) a model
is measured under."""

import numpy as np
import torch
from scipy.signal import fftconvolve

from hf_vqvae.models.audio_vqvae.loudness import gated_level_db


def mel_filterbank(n_mels: int, n_fft: int, sampling_rate: int) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the HTK mel scale, up to Nyquist."""
    def to_mel(hz):
        return 2595 * np.log10(1 + hz / 700)

    def to_hz(mel):
        return 700 * (10 ** (mel / 2595) - 1)

    edges = to_hz(np.linspace(to_mel(0), to_mel(sampling_rate / 2), n_mels + 2))
    bins = np.linspace(0, sampling_rate / 2, n_fft // 2 + 1)
    rising = (bins[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins[None]) / (edges[2:, None] - edges[1:-1, None])
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0, None)).float()


def log_mel(waveforms: torch.Tensor, sampling_rate: int = 16000, n_fft: int = 512, hop_length: int = 128, n_mels: int = 40) -> torch.Tensor:
    """(N, T) waveforms -> (N, n_mels, frames) log mel energies in dB (floored at -80 dB)."""
    window = torch.hann_window(n_fft)
    spectrum = torch.stft(waveforms.float(), n_fft, hop_length, window=window, return_complex=True).abs() ** 2
    mel = torch.einsum("mf,nft->nmt", mel_filterbank(n_mels, n_fft, sampling_rate), spectrum)
    return 10 * torch.log10(mel.clamp(min=1e-8))


def log_mel_distance(estimate: torch.Tensor, reference: torch.Tensor, sampling_rate: int = 16000) -> float:
    """Mean absolute difference of the log mel spectra, in dB (lower is closer)."""
    return float((log_mel(estimate, sampling_rate) - log_mel(reference, sampling_rate)).abs().mean())


def speaker_features(waveforms: torch.Tensor, sampling_rate: int = 16000) -> torch.Tensor:
    """Per clip: the mean and standard deviation over time of its log mel energies, (N, 2 * n_mels), each clip
    first scaled to unit RMS: the voice, not the recording level, tells speakers apart (the default set's voices
    differ by 13 dB in level, and a decoder that learnt one level would otherwise be credited with a voice)."""
    rms = waveforms.float().pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-8)
    spectra = log_mel(waveforms.float() / rms, sampling_rate)
    return torch.cat([spectra.mean(-1), spectra.std(-1)], dim=1)


class SpeakerClassifier:
    """Multinomial logistic regression on standardised `speaker_features`, fitted with L-BFGS and an L2 penalty."""

    def __init__(self, num_speakers: int, l2: float = 1e-3):
        self.num_speakers = num_speakers
        self.l2 = l2

    def fit(self, waveforms: torch.Tensor, speakers: torch.Tensor) -> "SpeakerClassifier":
        features = speaker_features(waveforms)
        self.mean, self.std = features.mean(0), features.std(0) + 1e-5
        inputs = (features - self.mean) / self.std
        self.linear = torch.nn.Linear(inputs.shape[1], self.num_speakers)
        optimizer = torch.optim.LBFGS(self.linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(self.linear(inputs), speakers) + self.l2 * self.linear.weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        return self

    @torch.no_grad()
    def probabilities(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(N, speakers): the classifier's probability of each speaker for each clip."""
        return self.linear((speaker_features(waveforms) - self.mean) / self.std).softmax(1)

    def predict(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.probabilities(waveforms).argmax(1)


def phonemes_at_latents(phonemes: list[str], ends: list[float], num_latents: int, hop_seconds: float, start: float = 0.0) -> list[str]:
    """The phoneme sounding at the middle of each latent (one per `hop_seconds`, the first at `start` seconds)."""
    labels, index = [], 0
    for position in range(num_latents):
        middle = start + (position + 0.5) * hop_seconds
        while index < len(ends) - 1 and ends[index] < middle:
            index += 1
        labels.append(phonemes[index])
    return labels


def phoneme_prediction(train_codes, train_phonemes, test_codes, test_phonemes) -> tuple[float, float, int]:
    """Predict each latent's phoneme as the one most often seen with its code in training. Returns accuracy, the
    accuracy of always guessing the most frequent phoneme (chance), and the number of phoneme classes."""
    table: dict[int, dict[str, int]] = {}
    for code, phoneme in zip(train_codes, train_phonemes):
        counts = table.setdefault(int(code), {})
        counts[phoneme] = counts.get(phoneme, 0) + 1
    overall: dict[str, int] = {}
    for phoneme in train_phonemes:
        overall[phoneme] = overall.get(phoneme, 0) + 1
    majority = max(overall, key=overall.get)
    predictions = [max(table[int(code)], key=table[int(code)].get) if int(code) in table else majority for code in test_codes]
    accuracy = float(np.mean([p == t for p, t in zip(predictions, test_phonemes)]))
    chance = float(np.mean([t == majority for t in test_phonemes]))
    return accuracy, chance, len(overall)


def agreement_by_chance(codes_a: torch.Tensor, codes_b: torch.Tensor, num_codes: int) -> float:
    """The agreement two unrelated code sequences with these code frequencies would have: sum_k p_k q_k."""
    p = torch.bincount(codes_a.flatten(), minlength=num_codes).double()
    q = torch.bincount(codes_b.flatten(), minlength=num_codes).double()
    return float((p / p.sum() * q / q.sum()).sum())


def entropy_bits(codes: torch.Tensor, num_codes: int) -> float:
    """Entropy of the code distribution in bits per code."""
    p = torch.bincount(codes.flatten(), minlength=num_codes).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log2()).sum()) if len(p) else 0.0


# ---------------------------------------------------------------------------------------------
# Do the codes carry their crop? Teacher-forced bits with a crop's own codes against another crop's


def other_crop_order(count: int) -> torch.Tensor:
    """For crop i, the index of another crop: a shift by half the batch, so no crop is paired with itself and
    neighbouring crops (often the same speaker in a sorted set) are not paired with each other."""
    return (torch.arange(count) + max(1, count // 2)) % count


@torch.no_grad()
def own_versus_other_codes(model, clips: torch.Tensor, speakers: torch.Tensor | None, batch_size: int = 16) -> dict:
    """Teacher-forced bits of each held-out crop given its own codes and given another crop's codes (same speaker
    id, same decoder): the control that tells whether the decoder reads its codes. Returns the mean bits per sample
    of each, the mean gain in bits per crop (other - own, summed over the crop's samples) and the share of crops
    whose own codes cost fewer bits."""
    codes = torch.cat([model.encode(clips[i : i + batch_size].to(model.device)).indices.cpu() for i in range(0, len(clips), batch_size)])
    other = codes[other_crop_order(len(codes))]
    own_bits, other_bits = [], []
    for i in range(0, len(clips), batch_size):
        batch_speakers = speakers[i : i + batch_size] if speakers is not None else None
        own_bits.append(model.teacher_forced_bits(clips[i : i + batch_size], batch_speakers, codes[i : i + batch_size]).cpu())
        other_bits.append(model.teacher_forced_bits(clips[i : i + batch_size], batch_speakers, other[i : i + batch_size]).cpu())
    own, other = torch.cat(own_bits), torch.cat(other_bits)
    return {
        "own_bits_per_sample": float(own.mean()),
        "other_bits_per_sample": float(other.mean()),
        "bits_saved_per_crop": float((other - own).mean() * clips.shape[1]),
        "own_codes_win": float((own < other).float().mean()),
        "codes": codes,
    }


# ---------------------------------------------------------------------------------------------
# Held-out conditions: recording level, added noise, reverberation


def add_noise(waveform: np.ndarray, snr_db: float, rng: np.random.Generator, sampling_rate: int = 16000) -> np.ndarray:
    """White Gaussian noise at `snr_db` below the clip's gated (speech) level."""
    level = gated_level_db(waveform, sampling_rate)
    noise = rng.standard_normal(len(waveform)) * 10 ** ((level - snr_db) / 20)
    return (waveform + noise).astype(np.float32)


def add_reverberation(waveform: np.ndarray, rt60: float, rng: np.random.Generator, sampling_rate: int = 16000) -> np.ndarray:
    """The clip through a synthetic room: the direct path, then a tail of Gaussian noise decaying by 60 dB in
    `rt60` seconds, with as much energy as the direct path (a talker a few metres from the microphone)."""
    times = np.arange(1, round(rt60 * sampling_rate)) / sampling_rate
    tail = rng.standard_normal(len(times)) * np.exp(-3 * np.log(10) * times / rt60)
    response = np.concatenate([[1.0], tail / np.sqrt((tail**2).sum())])
    return fftconvolve(waveform, response)[: len(waveform)].astype(np.float32)


def held_out_conditions(seed: int = 0) -> dict:
    """The conditions a speech model is measured under, by name: functions of (waveform, sampling rate) applied to
    whole utterances before the feature extractor sees them."""
    def noisy(waveform, rate):
        return add_noise(waveform, 20.0, np.random.default_rng(seed), rate)

    def reverberant(waveform, rate):
        return add_reverberation(waveform, 0.5, np.random.default_rng(seed + 1), rate)

    def noisy_and_reverberant(waveform, rate):
        return add_noise(reverberant(waveform, rate), 20.0, np.random.default_rng(seed + 2), rate)

    return {
        "gain 1": lambda waveform, rate: waveform,
        "gain 0.05": lambda waveform, rate: (0.05 * waveform).astype(np.float32),
        "noise 20 dB": noisy,
        "reverb 0.5 s": reverberant,
        "reverb + noise, gain 0.05": lambda waveform, rate: (0.05 * noisy_and_reverberant(waveform, rate)).astype(np.float32),
    }


__all__ = ["SpeakerClassifier", "agreement_by_chance", "entropy_bits", "log_mel", "log_mel_distance", "phoneme_prediction",
           "add_noise", "add_reverberation", "held_out_conditions", "other_crop_order", "own_versus_other_codes"]

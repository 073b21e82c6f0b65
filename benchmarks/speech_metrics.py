"""Measures of speech used by the audio benchmarks (and the slow conversion test): log-mel spectra and their
distance, a small speaker classifier trained on real audio, and a phoneme-from-code predictor."""

import numpy as np
import torch


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
    """Per clip: the mean and standard deviation over time of its log mel energies, (N, 2 * n_mels)."""
    spectra = log_mel(waveforms, sampling_rate)
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
    def predict(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.linear((speaker_features(waveforms) - self.mean) / self.std).argmax(1)


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


__all__ = ["SpeakerClassifier", "agreement_by_chance", "entropy_bits", "log_mel", "log_mel_distance", "phoneme_prediction"]

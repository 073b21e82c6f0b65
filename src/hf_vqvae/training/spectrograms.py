"""Spectrograms of generated audio, the figure a validation shows beside the audio itself (the audio VQ-VAE's
reconstructions and conversions, a prior's speech)."""

import math

import PIL.Image
import PIL.ImageDraw
import torch


def spectrogram(waveform: torch.Tensor, n_fft: int = 512, hop_length: int = 128) -> torch.Tensor:
    """Log-magnitude STFT, (frequencies, frames); a shorter window for clips shorter than `n_fft`."""
    n_fft = min(n_fft, 2 ** int(math.log2(waveform.shape[-1])))
    hop_length = min(hop_length, n_fft // 4)
    window = torch.hann_window(n_fft, device=waveform.device)
    stft = torch.stft(waveform.float(), n_fft, hop_length, window=window, return_complex=True)
    return (stft.abs() + 1e-5).log()


def spectrogram_figure(samples: dict[str, torch.Tensor], title: str = "") -> PIL.Image.Image:
    """The samples' spectrograms stacked, labelled, low frequencies at the bottom, on one colour scale."""
    spectrograms = {name: spectrogram(waveform.cpu()) for name, waveform in samples.items()}
    low = min(float(s.min()) for s in spectrograms.values())
    high = max(float(s.max()) for s in spectrograms.values())
    label_height, gap = 14, 4
    # Frames are stretched so that a short clip still gives a figure about 512 pixels wide.
    frames = max(s.shape[1] for s in spectrograms.values())
    stretch = max(2, 512 // frames)
    width = frames * stretch
    rows = []
    for name, values in spectrograms.items():
        levels = ((values.flip(0) - low) / max(high - low, 1e-6) * 255).clamp(0, 255).to(torch.uint8).numpy()
        image = PIL.Image.fromarray(levels).resize((values.shape[1] * stretch, values.shape[0]), PIL.Image.NEAREST)
        rows.append((name, image))
    height = sum(image.height + label_height + gap for _, image in rows) + (label_height if title else 0)
    figure = PIL.Image.new("RGB", (width, height), "white")
    draw = PIL.ImageDraw.Draw(figure)
    top = 0
    if title:
        draw.text((2, top), title, fill="black")
        top += label_height
    for name, image in rows:
        draw.text((2, top), name, fill="black")
        top += label_height
        figure.paste(PIL.Image.merge("RGB", (image, image, image)), (0, top))
        top += image.height + gap
    return figure

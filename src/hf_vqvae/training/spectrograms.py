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


def spectrogram_figure(samples: dict[str, torch.Tensor], sampling_rate: int, title: str = "") -> PIL.Image.Image:
    """The samples' spectrograms stacked, labelled, low frequencies at the bottom, on one colour scale, with a
    frequency axis (kHz) at the left of each and a time axis (s) under them."""
    spectrograms = {name: spectrogram(waveform.cpu()) for name, waveform in samples.items()}
    low = min(float(s.min()) for s in spectrograms.values())
    high = max(float(s.max()) for s in spectrograms.values())
    label_height, gap, axis_width = 14, 4, 36
    # Frames are stretched so that a short clip still gives a figure about 512 pixels wide.
    frames = max(s.shape[1] for s in spectrograms.values())
    stretch = max(2, 512 // frames)
    width = frames * stretch
    longest = max(waveform.shape[-1] for waveform in samples.values()) / sampling_rate
    rows = []
    for name, values in spectrograms.items():
        levels = ((values.flip(0) - low) / max(high - low, 1e-6) * 255).clamp(0, 255).to(torch.uint8).numpy()
        image = PIL.Image.fromarray(levels).resize((values.shape[1] * stretch, values.shape[0]), PIL.Image.NEAREST)
        rows.append((name, image))
    height = sum(image.height + label_height + gap for _, image in rows) + label_height + (label_height if title else 0)
    figure = PIL.Image.new("RGB", (axis_width + width + 8, height), "white")
    draw = PIL.ImageDraw.Draw(figure)
    top = 0
    if title:
        draw.text((2, top), title, fill="black")
        top += label_height
    nyquist_khz = sampling_rate / 2000
    for name, image in rows:
        draw.text((axis_width, top), name, fill="black")
        top += label_height
        figure.paste(PIL.Image.merge("RGB", (image, image, image)), (axis_width, top))
        for fraction in (0.0, 0.5, 1.0):  # top, middle and bottom of the frequency axis
            y = top + round((1 - fraction) * (image.height - 1))
            draw.line([(axis_width - 4, y), (axis_width - 1, y)], fill="black")
            draw.text((axis_width - 6, y), f"{fraction * nyquist_khz:g} kHz", fill="black", anchor="rm")
        top += image.height + gap
    seconds_per_tick = next(step for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60) if longest / step <= 8)
    ticks = int(longest / seconds_per_tick + 1e-9)
    for tick in range(ticks + 1):
        x = axis_width + round(tick * seconds_per_tick / longest * (width - 1))
        draw.line([(x, top - gap), (x, top - 1)], fill="black")
        unit = " s" if tick == ticks else ""
        draw.text((x, top), f"{tick * seconds_per_tick:g}{unit}", fill="black", anchor="ra" if unit else "ma")
    return figure

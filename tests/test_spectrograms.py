"""The spectrogram figure of the audio validations: a tone shows at its frequency on the figure's own axes."""

import math

import numpy as np
import torch

from hf_vqvae.training.spectrograms import spectrogram_figure


def test_a_tone_lies_at_its_height_on_the_frequency_axis_and_the_time_axis_is_labelled():
    rate, hertz = 16000, 2000
    tone = torch.sin(2 * math.pi * hertz * torch.arange(4096) / rate)
    figure = np.asarray(spectrogram_figure({"tone": tone}, rate).convert("L")).astype(int)
    axis_width, label_height = 36, 14
    margin = figure[label_height:label_height + 257, : axis_width - 8]
    assert (margin < 128).any() and (margin == 255).mean() > 0.7  # the kHz labels, on white, at the left
    plot = figure[label_height:label_height + 257, axis_width:axis_width + 40]  # 257 bins of a 512-point STFT
    brightest_row = int(plot.mean(axis=1).argmax())
    # Bottom row 0 Hz, top row 8 kHz: 2 kHz lies a quarter of the way up.
    assert abs(brightest_row - round(256 * (1 - hertz / (rate / 2)))) <= 2
    assert (figure[label_height + 257 + 4:] < 128).any()  # the time axis' labels under the plot

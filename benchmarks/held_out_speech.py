"""Speech no model here was trained on, for the audio benchmarks: real recordings that ship inside packages, and
other synthesisers' voices. Each source returns utterances as (16 kHz float32 waveform, speaker name) pairs, or
None with the reason when what it needs is not installed; nothing is downloaded.

- `pyannote_conversation`: a real two-speaker telephone conversation (30 s, 16 kHz, quiet: RMS 0.02) with its
  speaker turns, shipped inside the `pyannote.audio` wheel as its diarisation sample
  (`pyannote/audio/sample/sample.wav` and `sample.rttm`). Only those two files are read, found through the
  installed distribution's file list: the package itself is never imported, so
  `pip install --no-deps pyannote.audio` is enough (its own dependencies are heavy and not needed).
- `alsa_voice`: the recorded voice of Debian's `alsa-utils` (`/usr/share/sounds/alsa/*.wav`, "Front Left", ...; 48
  kHz), one real speaker.
- `espeak_voices`, `festival_voices`: sentences read by espeak-ng's formant voices and festival's diphone and HTS
  voices (Debian `espeak-ng`, `festival`, `festvox-kallpc16k`, `festvox-kdlpc16k`, `festvox-us-slt-hts`): kinds of
  speech unlike flite's.
"""

import importlib.metadata
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hf_vqvae.data.audio_files import decode_audio
from hf_vqvae.data.flite_speech import sentences


ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
ESPEAK_VOICES = ("en+m3", "en+f3", "en-us+m7", "en-gb-scotland+f5")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
# Turns shorter than this are left out: a crop needs context on both sides.
MIN_TURN_SECONDS = 0.6


def pyannote_conversation() -> tuple[list, str]:
    """Each speaker turn of the pyannote.audio sample as (waveform, speaker), overlaps left out."""
    try:
        distribution = importlib.metadata.distribution("pyannote.audio")
    except importlib.metadata.PackageNotFoundError:
        return None, "pyannote.audio is not installed (pip install --no-deps pyannote.audio)"
    folder = Path(distribution.locate_file("pyannote/audio/sample"))
    waveform = decode_audio(str(folder / "sample.wav"))
    turns = []
    for line in (folder / "sample.rttm").read_text().splitlines():
        fields = line.split()
        turns.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    utterances = []
    for start, end, speaker in turns:
        # Only the part of the turn nobody else speaks in.
        for other_start, other_end, other in turns:
            if other != speaker and other_start < end and other_end > start:
                start, end = (max(start, other_end), end) if other_start <= start else (start, min(end, other_start))
        if end - start >= MIN_TURN_SECONDS:
            utterances.append((waveform[round(start * 16000) : round(end * 16000)], speaker))
    return utterances, ""


def alsa_voice() -> tuple[list, str]:
    paths = sorted(path for path in ALSA_SOUNDS.glob("*.wav") if path.stem != "Noise")
    if not paths:
        return None, f"no recorded voice in {ALSA_SOUNDS} (apt-get install -y alsa-utils)"
    return [(decode_audio(str(path)), "alsa") for path in paths], ""


def _synthesised(command, voices, count: int, seed: int) -> list:
    utterances = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "utterance.wav"
        for index, voice in enumerate(voices):
            for text in sentences(count, seed=seed + index):
                subprocess.run(command(voice, text, str(path)), check=True, capture_output=True, timeout=120)
                utterances.append((decode_audio(str(path)), voice))
    return utterances


def espeak_voices(count: int = 3, seed: int = 7000) -> tuple[list, str]:
    if shutil.which("espeak-ng") is None:
        return None, "espeak-ng is not installed (apt-get install -y espeak-ng)"
    return _synthesised(lambda voice, text, path: ["espeak-ng", "-v", voice, "-w", path, text], ESPEAK_VOICES, count, seed), ""


def festival_voices(count: int = 3, seed: int = 8000) -> tuple[list, str]:
    if shutil.which("text2wave") is None:
        return None, "festival is not installed (apt-get install -y festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)"

    def command(voice, text, path):
        return ["bash", "-c", f"echo {text!r} | text2wave -eval '(voice_{voice})' -o {path}"]

    return _synthesised(command, FESTIVAL_VOICES, count, seed), ""


HELD_OUT_SPEECH = {
    "real: pyannote.audio's two-speaker call": pyannote_conversation,
    "real: alsa-utils' recorded voice": alsa_voice,
    "espeak-ng voices": espeak_voices,
    "festival voices": festival_voices,
}


def crops_of(utterances: list, length: int) -> tuple[list, list]:
    """Non-overlapping `length`-sample crops of each utterance (one, padded with silence, from a shorter one)."""
    crops, speakers = [], []
    for waveform, speaker in utterances:
        starts = range(0, max(1, len(waveform) - length + 1), length)
        for start in starts:
            crop = waveform[start : start + length]
            crops.append(np.pad(crop, (0, length - len(crop))).astype(np.float32))
            speakers.append(speaker)
    return crops, speakers


__all__ = ["HELD_OUT_SPEECH", "crops_of"]

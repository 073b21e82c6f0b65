"""The default speech data set: read speech of four voices synthesised offline by flite, with text and phoneme timings,
so that training the audio VQ-VAE needs no network."""

import io
import os
import random
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
from tqdm.auto import tqdm

from .audio_files import SAMPLING_RATE


DEFAULT_SPEECH_DATASET_NAME = "flite multi-speaker speech"

# flite's 16 kHz voices: awb (Scottish English, male), rms (US English, male) and slt (US English, female) were
# built from recordings of real speakers (CMU ARCTIC); kal16 is a diphone voice (US English, male).
FLITE_VOICES = ("awb", "rms", "slt", "kal16")

# Words of the synthesised sentences: a seeded generator combines them into distinct, speakable sentences.
SUBJECTS = (
    "the old man", "a young girl", "the farmer", "my neighbour", "the captain", "a tired doctor", "the small dog",
    "her brother", "the teacher", "a quiet student", "the baker", "our driver", "the painter", "a clever fox",
    "the pilot", "his mother", "the gardener", "a busy clerk", "the singer", "the fisherman",
)

VERBS = (
    "carried", "painted", "found", "opened", "cleaned", "watched", "moved", "bought", "fixed", "dropped", "counted",
    "hid", "measured", "packed", "pulled", "lifted", "sold", "noticed", "borrowed", "brought",
)

OBJECTS = (
    "a heavy box", "the red door", "seven apples", "the broken chair", "a long letter", "the blue kettle",
    "three candles", "the wooden fence", "a golden ring", "the empty basket", "a yellow kite", "the frozen pond",
    "two silver coins", "the dusty map", "a warm blanket", "the green bottle", "nine pencils", "the tall ladder",
)

PLACES = (
    "near the river", "before dinner", "in the morning", "behind the station", "under the bridge", "after the storm",
    "at the market", "on a cold night", "beside the harbour", "during the summer", "across the valley",
    "inside the barn", "along the beach", "by the church", "in the kitchen", "at noon",
)


class SpeechSynthesizerMissingError(RuntimeError):
    """The speech synthesiser that makes the default data set is not installed."""


def sentences(count: int, seed: int = 0) -> list[str]:
    """`count` distinct sentences drawn from the vocabulary above by a seeded generator."""
    rng = random.Random(seed)
    chosen, seen = [], set()
    while len(chosen) < count:
        sentence = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}."
        if sentence not in seen:
            seen.add(sentence)
            chosen.append(sentence[0].upper() + sentence[1:])
    return chosen


def flite_executable() -> str:
    """The path of `flite`, or a clear error saying how to install it."""
    path = shutil.which("flite")
    if path is None:
        raise SpeechSynthesizerMissingError(
            "the default speech data set is synthesised with flite, which is not installed; install it with "
            "`apt-get install -y flite` (Debian/Ubuntu), or train on your own data with --dataset_name"
        )
    return path


def synthesize(text: str, voice: str, folder: str | os.PathLike, flite: str) -> dict:
    """One utterance by flite: the WAV file's bytes, its duration, and the phonemes with their end times (s)."""
    path = Path(folder) / f"{voice}-{abs(hash(text))}.wav"
    result = subprocess.run(
        [flite, "-voice", voice, "-psdur", "-t", text, "-o", str(path)], capture_output=True, text=True, check=True
    )
    phonemes, ends = [], []
    for item in result.stdout.split():
        name, _, end = item.rpartition(":")
        phonemes.append(name)
        ends.append(float(end))
    wav_bytes = path.read_bytes()
    path.unlink()
    with wave.open(io.BytesIO(wav_bytes)) as reader:
        if reader.getframerate() != SAMPLING_RATE:
            raise RuntimeError(f"flite voice {voice!r} speaks at {reader.getframerate()} Hz, not {SAMPLING_RATE}")
        duration = reader.getnframes() / reader.getframerate()
    return {"audio": {"bytes": wav_bytes, "path": None}, "duration": duration, "phonemes": phonemes, "phoneme_ends": ends}


def make_default_speech_dataset(
    minutes_per_speaker: float = 3.0,
    voices: tuple[str, ...] = FLITE_VOICES,
    validation_fraction: float = 0.1,
    seed: int = 0,
    num_workers: int = 2,
) -> DatasetDict:
    """A multi-speaker read-speech set synthesised by flite, no network needed: every voice reads its own seeded
    sentences until it has spoken `minutes_per_speaker` minutes.

    Columns: `audio` (`datasets.Audio`, 16 kHz WAV), `speaker` (`ClassLabel` of the voices), `text`, `phonemes`
    and `phoneme_ends` (flite's phone labels and their end times in seconds), `duration` (s). Splits `train` and
    `validation`, stratified by speaker.
    """
    flite = flite_executable()
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie in (0, 1), got {validation_fraction}")
    unknown = sorted(set(voices) - set(FLITE_VOICES))
    if unknown:
        raise ValueError(f"unknown flite voices {unknown}; the 16 kHz voices are {list(FLITE_VOICES)}")
    # A sentence lasts about 2.7 s; ask for enough, then keep each voice's first ones up to its minutes.
    per_voice = max(4, int(minutes_per_speaker * 60 / 2.0) + 2)
    jobs = [(voice, text) for index, voice in enumerate(voices) for text in sentences(per_voice, seed * 1000 + index)]
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(max(1, num_workers)) as pool:
        synthesized = pool.map(lambda job: synthesize(job[1], job[0], folder, flite), jobs)
        utterances = list(tqdm(synthesized, total=len(jobs), desc=f"synthesising with flite ({len(voices)} voices)", unit="sentence"))
    rows = {"audio": [], "speaker": [], "text": [], "phonemes": [], "phoneme_ends": [], "duration": []}
    spoken = dict.fromkeys(voices, 0.0)
    for (voice, text), utterance in zip(jobs, utterances):
        if spoken[voice] >= minutes_per_speaker * 60:
            continue
        spoken[voice] += utterance["duration"]
        rows["speaker"].append(voices.index(voice))
        rows["text"].append(text)
        for key in ("audio", "phonemes", "phoneme_ends", "duration"):
            rows[key].append(utterance[key])
    # Built with the Audio column's storage type and cast afterwards: `datasets` encodes Audio values through
    # torchcodec even when they are already WAV bytes. The column decodes as any Hub audio set does
    # (`ds[0]["audio"]["array"]`, which needs torchcodec); the package itself reads the bytes (`undecoded_audio`).
    features = Features({
        "audio": {"bytes": Value("binary"), "path": Value("string")},
        "speaker": ClassLabel(names=list(voices)),
        "text": Value("string"),
        "phonemes": Sequence(Value("string")),
        "phoneme_ends": Sequence(Value("float32")),
        "duration": Value("float32"),
    })
    speech = Dataset.from_dict(rows, features=features).cast_column(
        "audio", Audio(sampling_rate=SAMPLING_RATE)
    )
    # At least one held-out utterance per speaker, so conversion can be measured on every voice.
    held_out = max(len(voices), round(validation_fraction * len(speech)))
    split = speech.train_test_split(test_size=held_out, seed=seed, stratify_by_column="speaker")
    return DatasetDict(train=split["train"], validation=split["test"])

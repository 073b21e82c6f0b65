"""Speech data: the flite default set, decoding, audiofolder / save_to_disk / streaming loading, unreadable clips."""

import io
import shutil
import wave

import numpy as np
import pytest
import torch
from datasets import Audio, load_from_disk

from hf_vqvae.data.audio_files import UnreadableAudioError, decode_audio
from hf_vqvae.data.examples import TooManyUnreadableImagesError
from hf_vqvae.commands.make_speech_data import make_speech_data
from hf_vqvae.commands.make_speech_data import parse_args as parse_make_speech_args
from hf_vqvae.data.flite_speech import DEFAULT_SPEECH_DATASET_NAME, SpeechSynthesizerMissingError, make_default_speech_dataset
from hf_vqvae.data.speech import (
    SpeechDatasets,
    check_speech_columns,
    load_speech_splits,
    speaker_names_of,
    speech_dataloader,
    undecoded_audio,
    validation_clips,
)


needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install -y flite)")


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    """16-bit PCM WAV; `samples` (time,) or (time, channels) floats in [-1, 1]."""
    samples = samples.reshape(len(samples), -1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(samples.shape[1])
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((samples * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def tone(frequency: float, seconds: float, rate: int = 16000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.fixture
def speech_folder(tmp_path):
    """An audiofolder: two speakers' folders of 0.5 s WAV clips, and one file that is not audio."""
    root = tmp_path / "speech"
    for speaker, frequency in (("alice", 200.0), ("bert", 120.0)):
        (root / speaker).mkdir(parents=True)
        for index in range(6):
            (root / speaker / f"{index}.wav").write_bytes(wav_bytes(tone(frequency + 10 * index, 0.5)))
    (root / "bert" / "broken.wav").write_bytes(b"RIFF but not really a wave file")
    return root


@needs_flite
def test_default_set_has_four_real_voices_with_text_and_phoneme_timings():
    speech = make_default_speech_dataset(minutes_per_speaker=0.1, seed=1)
    assert speech["train"].features["audio"] == Audio(sampling_rate=16000)  # decodes as any Hub audio set does
    train, validation = undecoded_audio(speech["train"]), undecoded_audio(speech["validation"])
    assert train.features["speaker"].names == ["awb", "rms", "slt", "kal16"]
    assert set(train["speaker"]) == set(validation["speaker"]) == {0, 1, 2, 3}
    row = train[0]
    waveform = decode_audio(row["audio"])
    assert abs(len(waveform) / 16000 - row["duration"]) < 1e-3 and waveform.std() > 0.01
    assert row["text"].endswith(".") and len(row["text"].split()) >= 6
    ends = np.array(row["phoneme_ends"])
    assert row["phonemes"][0] == "pau" and len(row["phonemes"]) == len(ends) > 10
    assert (np.diff(ends) > 0).all() and ends[-1] <= row["duration"] + 0.01
    # Each voice reads at least its 6 seconds.
    durations = np.array(list(train["duration"]) + list(validation["duration"]))
    speakers = np.array(list(train["speaker"]) + list(validation["speaker"]))
    assert all(durations[speakers == s].sum() >= 6 for s in range(4))


def torchcodec_decodes() -> bool:
    """datasets decodes an Audio column through torchcodec; PyPI's torchcodec wheels load only with a CUDA build of
    torch, so on a CPU-only install the package reads the bytes itself."""
    try:
        from torchcodec.decoders import AudioDecoder  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@needs_flite
@pytest.mark.skipif(not torchcodec_decodes(), reason="torchcodec does not load with this torch build")
def test_datasets_decodes_the_default_set_to_the_waveform_the_package_reads():
    speech = make_default_speech_dataset(minutes_per_speaker=0.1, voices=("awb", "slt"), seed=2)
    decoded = speech["validation"][0]["audio"]
    own = decode_audio(undecoded_audio(speech["validation"])[0]["audio"])
    assert decoded["sampling_rate"] == 16000
    assert np.allclose(np.asarray(decoded["array"]).reshape(-1), own, atol=1e-4)


@needs_flite
def test_the_data_maker_shows_progress_and_says_what_it_wrote(tmp_path, capsys):
    output_dir = tmp_path / "speech"
    make_speech_data(parse_make_speech_args(["--output_dir", str(output_dir), "--minutes_per_speaker", "0.1",
                                             "--voices", "awb", "slt"]))
    output = capsys.readouterr()
    assert "synthesising with flite (2 voices)" in output.err and "sentence" in output.err  # a progress bar
    saved = load_from_disk(str(output_dir))
    rows = ", ".join(f"{split} {len(data)} rows ({sum(data['duration']) / 60:.1f} min)" for split, data in saved.items())
    assert output.out.endswith(f"wrote {DEFAULT_SPEECH_DATASET_NAME} to {output_dir}: {rows}\n")
    assert len(saved["train"]) > 0 and len(saved["validation"]) >= 2


def test_missing_flite_says_what_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SpeechSynthesizerMissingError, match="apt-get install -y flite"):
        make_default_speech_dataset(minutes_per_speaker=0.1)


def test_decoding_averages_channels_resamples_and_rejects_garbage():
    stereo = np.stack([tone(300, 0.25, 8000), -tone(300, 0.25, 8000) * 0.5], axis=1)
    waveform = decode_audio({"bytes": wav_bytes(stereo, 8000), "path": None}, sampling_rate=16000)
    assert waveform.shape == (4000,) and abs(np.abs(waveform).max() - 0.125) < 0.01
    assert decode_audio({"array": tone(300, 0.1), "sampling_rate": 16000}).shape == (1600,)
    for garbage in ({"bytes": b"not audio", "path": None}, {"bytes": None, "path": None}, b"", "/no/such/file.wav"):
        with pytest.raises(UnreadableAudioError, match="cannot decode audio"):
            decode_audio(garbage)


def test_a_clip_with_nan_samples_is_unreadable_and_counted_as_such(tmp_path, caplog):
    soundfile = pytest.importorskip("soundfile")
    samples = tone(300, 0.5).astype(np.float32)
    samples[100:103] = np.nan
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 16000, format="WAV", subtype="FLOAT")
    with pytest.raises(UnreadableAudioError, match="3 of its 8000 samples are NaN or infinite"):
        decode_audio({"bytes": buffer.getvalue(), "path": None})
    with pytest.raises(UnreadableAudioError, match="1 of its 1600 samples are NaN or infinite"):
        decode_audio({"array": np.concatenate([tone(300, 0.1)[:-1], [np.inf]]), "sampling_rate": 16000})
    for speaker in ("alice", "bert"):
        (tmp_path / speaker).mkdir()
        for index in range(3):
            (tmp_path / speaker / f"{index}.wav").write_bytes(wav_bytes(tone(200 + 100 * index, 0.5)))
    (tmp_path / "bert" / "nan.wav").write_bytes(buffer.getvalue())
    splits, name = load_speech_splits(train_data_dir=str(tmp_path))
    train = undecoded_audio(splits["train"], "audio")
    names = speaker_names_of(train, "label")
    datasets = SpeechDatasets(train, train, "audio", "label", names, name)
    batches = list(speech_dataloader(datasets, segment_length=4096, batch_size=2, seed=0, max_unreadable_fraction=0.2))
    assert sum(len(batch["input_values"]) for batch in batches) == 6
    assert "skipped 1 unreadable audio clips of 7" in caplog.text
    assert all(torch.isfinite(batch["input_values"]).all() for batch in batches)


def test_a_flat_audio_folder_takes_its_speakers_from_metadata_csv(tmp_path):
    speakers = ["alice", "bert", "alice", "bert"]
    for index in range(4):
        (tmp_path / f"{index}.wav").write_bytes(wav_bytes(tone(200 + 100 * index, 0.5)))
    (tmp_path / "metadata.csv").write_text("file_name,speaker\n" + "".join(f"{i}.wav,{s}\n" for i, s in enumerate(speakers)))
    splits, name = load_speech_splits(train_data_dir=str(tmp_path))
    train = undecoded_audio(splits["train"], "audio")
    check_speech_columns(train, "audio", "speaker")
    assert train["speaker"] == speakers and speaker_names_of(train, "speaker") == ["alice", "bert"]
    waveform = decode_audio(train[2]["audio"])
    assert np.allclose(waveform, tone(400, 0.5), atol=1e-4)  # the file metadata.csv names on row 2
    (tmp_path / "metadata.csv").write_text("path,speaker\n0.wav,alice\n")
    with pytest.raises(ValueError, match="metadata.csv needs a file_name column.*'path', 'speaker'"):
        load_speech_splits(train_data_dir=str(tmp_path))


def test_audiofolder_skips_and_counts_unreadable_clips(speech_folder, caplog):
    splits, name = load_speech_splits(train_data_dir=str(speech_folder))
    train = undecoded_audio(splits["train"], "audio")
    names = speaker_names_of(train, "label")
    assert names == ["alice", "bert"] and len(train) == 13
    datasets = SpeechDatasets(train, train, "audio", "label", names, name)
    loader = speech_dataloader(datasets, segment_length=4096, batch_size=4, seed=0, max_unreadable_fraction=0.2)
    batches = list(loader)
    assert sum(len(batch["input_values"]) for batch in batches) == 12
    assert "skipped 1 unreadable audio clips of 13" in caplog.text
    assert set(torch.cat([batch["speaker_ids"] for batch in batches]).tolist()) == {0, 1}
    with pytest.raises(TooManyUnreadableImagesError, match="1 of 13 audio clips could not be decoded.*--audio_column"):
        speech_dataloader(datasets, segment_length=4096, batch_size=4, seed=0, max_unreadable_fraction=0.01)


def test_crops_are_seeded_and_short_clips_padded(speech_folder):
    splits, name = load_speech_splits(train_data_dir=str(speech_folder))
    train = undecoded_audio(splits["train"], "audio").filter(lambda row: row["audio"]["path"].endswith("0.wav"))
    datasets = SpeechDatasets(train, train, "audio", None, None, name)

    def first_batch(seed):
        return next(iter(speech_dataloader(datasets, segment_length=2048, batch_size=2, seed=seed)))["input_values"]

    assert torch.equal(first_batch(0), first_batch(0)) and not torch.equal(first_batch(0), first_batch(1))
    long_crop = next(iter(speech_dataloader(datasets, segment_length=9600, batch_size=1, seed=0)))["input_values"]
    assert long_crop.shape == (1, 9600) and long_crop[0, 8000:].abs().sum() == 0
    clips, speakers = validation_clips(datasets, 4096, max_samples=5)
    assert clips.shape == (2, 4096) and speakers is None


def test_save_to_disk_folder_streams_with_string_speakers(tmp_path):
    from datasets import Audio, Dataset, DatasetDict

    rows = {"audio": [{"bytes": wav_bytes(tone(200 + i, 0.3)), "path": None} for i in range(8)],
            "who": ["zoe", "ann"] * 4}
    data = Dataset.from_dict(rows).cast_column("audio", Audio(sampling_rate=16000, decode=False))
    DatasetDict(train=data).save_to_disk(tmp_path / "saved")
    splits, _ = load_speech_splits(dataset_name=str(tmp_path / "saved"))
    assert speaker_names_of(splits["train"], "who") == ["ann", "zoe"]
    datasets = SpeechDatasets(splits["train"], splits["train"], "audio", "who", ["ann", "zoe"], "saved")
    batch = next(iter(speech_dataloader(datasets, segment_length=1024, batch_size=8, seed=0)))
    assert sorted(batch["speaker_ids"].tolist()) == [0] * 4 + [1] * 4

    streamed, _ = load_speech_splits(dataset_name=str(tmp_path / "saved"), streaming=True)
    with pytest.raises(ValueError, match="must be a ClassLabel"):
        speaker_names_of(streamed["train"], "who")
    stream = SpeechDatasets(streamed["train"], streamed["train"], "audio", None, None, "saved")
    batches = list(speech_dataloader(stream, segment_length=1024, batch_size=3, seed=0))
    assert [len(batch["input_values"]) for batch in batches] == [3, 3, 2]

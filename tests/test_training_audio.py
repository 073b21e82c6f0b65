"""The audio VQ-VAE's training recipe: a run from Python and from the script, kill-and-resume exactness, TensorBoard
audio, the pushed card, bad settings; slow: a small model learns real (synthesised) speech and reads its codes, and
converts voices (not met at that size: an expected failure)."""

import json
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_vqvae import AudioVQVAEFeatureExtractor, AudioVQVAEModel
from hf_vqvae.data.speech import SpeechDataArguments, undecoded_audio
from hf_vqvae.training.arguments import HubArguments, OptimizationArguments, OutputArguments
from hf_vqvae.training.code_usage import CodeUsageWatch
from hf_vqvae.training.recipes.audio_vqvae import (
    AudioModelArguments,
    AudioSampleArguments,
    AudioVQVAETrainingArguments,
    build_audio_config,
    parse_args,
    train_audio_vqvae,
)

from conftest import reset_accelerate_state
from launching import ROOT, accelerate_launch, kill_when_exists, run, script
from test_speech_data import speech_folder, wav_bytes  # noqa: F401  (fixture)


TRAIN_AUDIO = script("train_audio.py")
TINY_MODEL = ["hidden_channels=16", "num_embeddings=16", "embedding_dim=4", "residual_channels=8", "gate_channels=8",
              "skip_channels=8", "num_layers=4", "dilation_cycle=4", "conditioning_channels=4"]

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def tiny_flags(output_dir, folder, *extra: str) -> list[str]:
    """A tiny model (hop 4, receptive field 16) on 256-sample crops of an audio folder of two speakers."""
    return [
        "--train_data_dir", str(folder), "--output_dir", str(output_dir), "--segment_length", "256",
        "--downsampling_strides", "2", "2", "--config_overrides", *TINY_MODEL, "--train_batch_size", "4",
        "--validation_fraction", "0.25", "--audio_sample_seconds", "0.004", "--report_to", "none", *extra,
    ]


def test_a_run_from_python_writes_model_samples_and_card(tmp_path, speech_folder):  # noqa: F811
    arguments = parse_args(tiny_flags(tmp_path / "run", speech_folder, "--max_train_steps", "6", "--report_to", "tensorboard",
                                      "--validation_steps", "3", "--max_unreadable_fraction", "0.2"))
    metrics = train_audio_vqvae(arguments)
    folder = tmp_path / "run"
    model = AudioVQVAEModel.from_pretrained(folder)
    assert model.config.speaker_names == ["alice", "bert"] and model.config.hop_length == 4
    assert metrics["train_steps"] == 6 and 0 < metrics["validation_bits_per_sample"] < 8.5
    assert json.loads((folder / "metrics.json").read_text()) == metrics
    assert {path.name for path in (folder / "samples").iterdir()} == {"original.wav", "reconstruction.wav", "conversion.wav"}
    card = (folder / "README.md").read_text()
    assert "![figures](spectrograms.png)" in card and "samples/conversion.wav" in card and "`alice`" in card
    # TensorBoard got the validation audio and the spectrogram figure.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((folder / "logs").rglob("events.out.tfevents.*").__iter__()).parent),
                              size_guidance={"audio": 0, "images": 0}).Reload()
    assert {"validation/conversion", "validation/reconstruction", "validation/original"} <= set(events.Tags()["audio"])
    assert "validation/spectrograms" in events.Tags()["images"]


def test_streaming_an_audio_folder(tmp_path, speech_folder):  # noqa: F811
    flags = tiny_flags(tmp_path / "run", speech_folder, "--streaming", "--max_train_steps", "3",
                       "--max_validation_samples", "3", "--max_unreadable_fraction", "0.5")
    metrics = train_audio_vqvae(parse_args(flags))
    assert metrics["train_steps"] == 3 and metrics["validation_clips"] == 3
    assert AudioVQVAEModel.from_pretrained(tmp_path / "run").config.speaker_names == ["alice", "bert"]


def test_accelerate_launch_two_processes_end_with_identical_weights(tmp_path, speech_folder):  # noqa: F811
    output_dir = tmp_path / "run"
    result = run([
        *accelerate_launch(num_processes=2), TRAIN_AUDIO,
        *tiny_flags(output_dir, speech_folder, "--max_train_steps", "4", "--checkpointing_steps", "2",
                    "--max_unreadable_fraction", "0.2"),
    ], timeout=240)
    fingerprints = re.search(r"weights sha256 by process: 0=(\w+) 1=(\w+)", result.stderr)
    assert fingerprints, result.stderr[-2000:]
    assert fingerprints.group(1) == fingerprints.group(2)
    assert "4 updates of 8 (4 per device x 2 processes x 1 accumulation)" in result.stderr
    assert (output_dir / "checkpoint-4" / "random_states_1.pkl").exists()
    AudioVQVAEModel.from_pretrained(output_dir)


def test_killed_run_resumes_to_the_same_weights(tmp_path, speech_folder):  # noqa: F811
    """SIGKILL a run after its first checkpoint, resume it with `latest`: the final weights (codebook and EMA
    statistics included) equal an uninterrupted run's bit for bit; validation draws samples in between, and the
    training clips' noise and rooms are drawn again as they were."""
    flags = ["--max_train_steps", "14", "--checkpointing_steps", "4", "--gradient_accumulation_steps", "2",
             "--validation_steps", "5", "--max_unreadable_fraction", "0.2", "--noise_probability", "0.5",
             "--reverb_probability", "0.5"]
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run([sys.executable, TRAIN_AUDIO, *tiny_flags(reference, speech_folder, *flags)])
    kill_when_exists([sys.executable, TRAIN_AUDIO, *tiny_flags(interrupted, speech_folder, *flags)], interrupted / "checkpoint-4")
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"
    result = run([sys.executable, TRAIN_AUDIO, *tiny_flags(interrupted, speech_folder, *flags, "--resume_from_checkpoint", "latest")])
    assert re.search(r"resumed from .*checkpoint-(\d+) at step", result.stderr)
    final, expected = load_file(interrupted / "model.safetensors"), load_file(reference / "model.safetensors")
    assert final.keys() == expected.keys()
    for name in expected:
        assert torch.equal(final[name], expected[name]), name


def test_push_uploads_model_samples_and_card(tmp_path, speech_folder, recorded_uploads):  # noqa: F811
    flags = tiny_flags(tmp_path / "run", speech_folder, "--max_train_steps", "2", "--max_unreadable_fraction", "0.2",
                       "--push_to_hub", "--hub_model_id", "org/tiny-speech")
    train_audio_vqvae(parse_args(flags))
    upload = recorded_uploads[-1]
    assert upload["repo_id"] == "org/tiny-speech"
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "spectrograms.png", "samples/conversion.wav",
            "metrics.json", "README.md"} <= set(upload["files"])
    assert not any(name.startswith(("checkpoint-", "logs/")) for name in upload["files"])
    assert "validation_bits_per_sample" in upload["files"]["README.md"].decode()


def test_bad_settings_name_the_problem(tmp_path, speech_folder):  # noqa: F811
    model = AudioModelArguments(downsampling_strides=[2, 2], config_overrides=TINY_MODEL)
    with pytest.raises(ValueError, match="--segment_length 258 is not a multiple of the model's hop length 4"):
        build_audio_config(model, ["a", "b"], 258)
    with pytest.raises(ValueError, match="--segment_length 8 is shorter than the decoder's receptive field \\(16"):
        build_audio_config(model, None, 8)
    config = build_audio_config(model, ["a", "b"], 256)
    assert config.num_speakers == 2 and config.receptive_field == 16
    assert build_audio_config(model, None, 256).num_speakers == 0
    with pytest.raises(ValueError, match="'speakers' is not a AudioVQVAEConfig field"):
        AudioModelArguments(config_overrides=["speakers=3"])
    with pytest.raises(ValueError, match="--preset must be one of \\['vctk'\\]"):
        AudioModelArguments(preset="librispeech")
    with pytest.raises(ValueError, match="either --dataset_name or --train_data_dir"):
        SpeechDataArguments(dataset_name="x", train_data_dir=str(speech_folder))
    with pytest.raises(ValueError, match="--speaker_column 'who' is not a column"):
        train_audio_vqvae(parse_args(tiny_flags(tmp_path / "bad", speech_folder, "--speaker_column", "who")))
    with pytest.raises(SystemExit):
        parse_args(["--segment_length", "many"])


def test_the_recipe_is_callable_with_dataclasses(tmp_path, speech_folder):  # noqa: F811
    arguments = AudioVQVAETrainingArguments(
        data=SpeechDataArguments(train_data_dir=str(speech_folder), segment_length=256, validation_fraction=0.25,
                                 max_unreadable_fraction=0.2),
        model=AudioModelArguments(downsampling_strides=[2, 2], config_overrides=TINY_MODEL),
        samples=AudioSampleArguments(audio_sample_seconds=0.004),
        optimization=OptimizationArguments(max_train_steps=2, train_batch_size=4),
        output=OutputArguments(output_dir=str(tmp_path / "run"), report_to="none"),
        hub=HubArguments(),
    )
    assert train_audio_vqvae(arguments)["train_steps"] == 2
    saved = json.loads((tmp_path / "run" / "training_arguments.json").read_text())
    assert saved["model"]["downsampling_strides"] == [2, 2] and saved["data"]["segment_length"] == 256


def babble(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    """Speech-like sound at about -20 dBFS: 20-100 ms stretches of voiced harmonics (random pitch and timbre), hiss
    and pauses, one after another."""
    rng = np.random.default_rng(seed)
    pieces = []
    while sum(map(len, pieces)) < seconds * rate:
        time = np.arange(int(rng.uniform(0.02, 0.1) * rate)) / rate
        kind = rng.choice(["voiced", "hiss", "pause"], p=[0.6, 0.25, 0.15])
        if kind == "voiced":
            pitch = rng.uniform(90, 250)
            piece = sum(rng.uniform(0, 1) / k * np.sin(2 * np.pi * k * pitch * time) for k in range(1, 6))
        elif kind == "hiss":
            piece = 0.5 * rng.standard_normal(len(time))
        else:
            piece = 0.01 * rng.standard_normal(len(time))
        pieces.append(0.1 * piece * np.hanning(len(time)))
    return np.concatenate(pieces)[: int(seconds * rate)].astype(np.float32)


def test_a_quiet_recording_still_uses_many_codes(tmp_path, caplog):
    """Two speakers recorded 34 dB below the loudness target (-54 dBFS): the recipe scales each clip to the target
    and the encoder starts with latents spread by their input, so the codes do not collapse: a held-out quiet clip
    uses most of the codebook, and the run logs no collapse."""
    root = tmp_path / "quiet"
    for speaker, seed in (("ann", 0), ("bob", 100)):
        (root / speaker).mkdir(parents=True)
        for index in range(4):
            (root / speaker / f"{index}.wav").write_bytes(wav_bytes(0.02 * babble(1.0, seed + index)))
    flags = tiny_flags(tmp_path / "run", root, "--max_train_steps", "30", "--learning_rate", "3e-3")
    with caplog.at_level("WARNING"):
        train_audio_vqvae(parse_args(flags))
    assert "code usage collapsed" not in caplog.text
    model = AudioVQVAEModel.from_pretrained(tmp_path / "run").eval()
    extractor = AudioVQVAEFeatureExtractor.from_pretrained(tmp_path / "run")
    held_out = extractor(0.02 * babble(1.0, 999), sampling_rate=16000, return_tensors="pt")["input_values"]
    codes = model.encode(held_out).indices
    assert len(codes.unique()) >= 0.5 * model.config.num_embeddings, codes.unique()


def test_the_log_warns_when_code_usage_collapses_and_when_it_recovers(caplog):
    watch = CodeUsageWatch(num_embeddings=64, hint="Check the level.")
    with caplog.at_level("INFO", logger="hf_vqvae.training.code_usage"):
        for perplexity in [40.0] * 5 + [2.0] * 9:
            watch.update(perplexity, latents=256)
        assert "collapsed" not in caplog.text  # nine low batches may be bad luck
        watch.update(1.5, latents=256)
        assert caplog.text.count("code usage collapsed") == 1 and "Check the level." in caplog.text
        assert "perplexity below 6.4 (now 1.5, of K=64 codes and 256 latents per batch)" in caplog.text
        for perplexity in [2.0] * 20:
            watch.update(perplexity, latents=256)
        assert caplog.text.count("code usage collapsed") == 1  # said once
        watch.update(30.0, latents=256)
        assert "code usage recovered at update 36" in caplog.text
    # With fewer latents per batch than codes, the floor is set by the latents.
    small = CodeUsageWatch(num_embeddings=512, enabled=False)
    for _ in range(10):
        small.update(5.0, latents=64)
    assert small.collapsed


NEEDS_FLITE = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install -y flite)")


@pytest.fixture(scope="module")
def small_speech_run(tmp_path_factory):
    """(data folder, run folder, final metrics) of a small model trained by the recipe on the synthesised default set
    (4 voices, 1 minute each): 300 updates of 8 crops, K = 32. Trained once for the slow tests below."""
    from hf_vqvae.data.flite_speech import make_default_speech_dataset

    root = tmp_path_factory.mktemp("small-speech")
    make_default_speech_dataset(minutes_per_speaker=1.0).save_to_disk(root / "speech")
    flags = ["--dataset_name", str(root / "speech"), "--speaker_column", "speaker", "--output_dir", str(root / "run"),
             "--segment_length", "2048", "--config_overrides", "hidden_channels=32", "num_embeddings=32", "embedding_dim=16",
             "residual_channels=32", "gate_channels=32", "skip_channels=32", "num_layers=10", "dilation_cycle=10",
             "conditioning_channels=16", "--max_train_steps", "300", "--learning_rate", "2e-3", "--train_batch_size", "8",
             "--audio_sample_seconds", "0.01", "--report_to", "none", "--validation_steps", "1000"]
    metrics = train_audio_vqvae(parse_args(flags))
    reset_accelerate_state()
    return root / "speech", root / "run", metrics


@pytest.mark.slow
@NEEDS_FLITE
def test_a_small_model_learns_speech_and_reads_its_codes(small_speech_run):
    """On the synthesised default set the teacher-forced loss falls well below its start and held-out clips cost
    fewer bits with their own codes than with another clip's."""
    _, _, metrics = small_speech_run
    # An untrained decoder scores about log2(256) = 8 bits per sample.
    assert metrics["validation_bits_per_sample"] < 5.0
    assert metrics["validation_own_codes_win"] >= 0.9


@pytest.mark.slow
@NEEDS_FLITE
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="not met at this size (docs/benchmarks.md): conversion does not raise the level-invariant classifier's "
    "mean P(target) over the same codes decoded as their own speaker (0.127 vs 0.134; 5 of 8 clips move toward the "
    "target)",
)
def test_a_small_model_converts_voices(small_speech_run):
    """Decoding a clip's codes as another speaker raises a level-invariant speaker classifier's probability of that
    speaker over decoding the same codes as their own speaker."""
    speech_folder, run_folder, _ = small_speech_run
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from speech_metrics import SpeakerClassifier

    from datasets import load_from_disk

    from hf_vqvae.data.audio_files import decode_audio

    extractor = AudioVQVAEFeatureExtractor.from_pretrained(run_folder)

    def crops(rows, offset, length=4096):
        # Whole utterances through the model's feature extractor (loudness normalisation), as a user's audio goes.
        clips = [extractor(decode_audio(row["audio"]), sampling_rate=16000, return_tensors="pt")["input_values"][0]
                 for row in rows]
        clips = [clip[offset : offset + length] for clip in clips]
        return torch.stack([torch.nn.functional.pad(clip, (0, length - len(clip))) for clip in clips])

    speech = undecoded_audio(load_from_disk(speech_folder))
    train_clips = torch.cat([crops(speech["train"], offset) for offset in (2000, 8000, 14000)])
    classifier = SpeakerClassifier(4).fit(train_clips, torch.tensor(list(speech["train"]["speaker"]) * 3))
    model = AudioVQVAEModel.from_pretrained(run_folder).eval()
    validation = crops(speech["validation"], 4000)
    sources = torch.tensor(list(speech["validation"]["speaker"]))
    targets = (sources + 1 + torch.arange(len(sources)) % 3) % 4
    # The control of the same model: the same codes decoded as their own speaker. The classifier is level-invariant,
    # so a decoder that only learnt each speaker's level earns nothing.
    with torch.no_grad():
        codes = model.encode(validation).indices
        decoded = model.decode(torch.cat([codes, codes]), torch.cat([targets, sources]),
                               generator=torch.Generator().manual_seed(0)).audio_values
    probabilities = classifier.probabilities(decoded)
    index = torch.arange(len(sources))
    converted, unconverted = probabilities[: len(sources)][index, targets], probabilities[len(sources) :][index, targets]
    assert converted.mean() > unconverted.mean(), (converted, unconverted)

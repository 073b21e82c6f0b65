"""The audio VQ-VAE's training recipe: a run from Python and from the script, kill-and-resume exactness, TensorBoard
audio, the pushed card, bad settings; slow: a small model learns real (synthesised) speech and converts voices."""

import json
import re
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file

from hf_vqvae import AudioVQVAEModel
from hf_vqvae.data.speech import SpeechDataArguments
from hf_vqvae.training.arguments import HubArguments, OptimizationArguments, OutputArguments
from hf_vqvae.training.recipes.audio_vqvae import (
    AudioModelArguments,
    AudioSampleArguments,
    AudioVQVAETrainingArguments,
    build_audio_config,
    parse_args,
    train_audio_vqvae,
)

from launching import ROOT, accelerate_launch, kill_when_exists, run, script
from test_speech_data import speech_folder  # noqa: F401  (fixture)


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
    statistics included) equal an uninterrupted run's bit for bit; validation draws samples in between."""
    flags = ["--max_train_steps", "14", "--checkpointing_steps", "4", "--gradient_accumulation_steps", "2",
             "--validation_steps", "5", "--max_unreadable_fraction", "0.2"]
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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install -y flite)")
def test_a_small_model_learns_speech_and_converts_voices(tmp_path):
    """On the synthesised default set (4 voices): the teacher-forced loss falls well below its start, and a tiny
    speaker classifier trained on real clips assigns converted clips to the target speaker above chance."""
    from hf_vqvae.data.flite_speech import make_default_speech_dataset

    make_default_speech_dataset(minutes_per_speaker=1.0).save_to_disk(tmp_path / "speech")
    flags = ["--dataset_name", str(tmp_path / "speech"), "--speaker_column", "speaker", "--output_dir", str(tmp_path / "run"),
             "--segment_length", "2048", "--config_overrides", "hidden_channels=32", "num_embeddings=32", "embedding_dim=16",
             "residual_channels=32", "gate_channels=32", "skip_channels=32", "num_layers=10", "dilation_cycle=10",
             "conditioning_channels=16", "--max_train_steps", "300", "--learning_rate", "2e-3", "--train_batch_size", "8",
             "--audio_sample_seconds", "0.01", "--report_to", "none", "--validation_steps", "1000"]
    metrics = train_audio_vqvae(parse_args(flags))
    # An untrained decoder scores about log2(256) = 8 bits per sample.
    assert metrics["validation_bits_per_sample"] < 5.0

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from speech_metrics import SpeakerClassifier

    from datasets import load_from_disk

    from hf_vqvae.data.audio_files import decode_audio

    def crops(rows, offset, length=4096):
        clips = [torch.from_numpy(decode_audio(row["audio"]))[offset : offset + length] for row in rows]
        return torch.stack([torch.nn.functional.pad(clip, (0, length - len(clip))) for clip in clips])

    speech = load_from_disk(tmp_path / "speech")
    train_clips = torch.cat([crops(speech["train"], offset) for offset in (2000, 8000, 14000)])
    classifier = SpeakerClassifier(4).fit(train_clips, torch.tensor(list(speech["train"]["speaker"]) * 3))
    model = AudioVQVAEModel.from_pretrained(tmp_path / "run").eval()
    validation = crops(speech["validation"], 4000)
    sources = torch.tensor(list(speech["validation"]["speaker"]))
    targets = (sources + 1 + torch.arange(len(sources)) % 3) % 4
    with torch.no_grad():
        converted = model.convert(validation, targets, generator=torch.Generator().manual_seed(0)).audio_values
    predicted = classifier.predict(converted)
    to_target, to_source = (predicted == targets).float().mean(), (predicted == sources).float().mean()
    assert to_target > 0.25 and to_target > to_source, (to_target, to_source)

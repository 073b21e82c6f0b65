"""Unconditional speech: the codes of an audio VQ-VAE's speech segments as one-row grids, a PixelCNN prior trained on
them through the prior's recipe, and the AudioVQVAEPipeline it ends with, generating speech after an offline Hub
round trip; the bad inputs on the way."""

import json
import sys

import numpy as np
import pytest
import torch
from datasets import load_from_disk

from hf_vqvae import AudioVQVAEConfig, AudioVQVAEModel, AudioVQVAEPipeline, PixelCNNPriorConfig, VQVAEConfig, VQVAEModel
from hf_vqvae.commands.extract_speech_codes import extract_speech_codes
from hf_vqvae.commands.extract_speech_codes import parse_args as parse_extract_speech_args
from hf_vqvae.data.audio_files import decode_audio, decode_for_model
from hf_vqvae.data.speech import SpeechDataArguments, load_speech_datasets
from hf_vqvae.training.recipes.prior import parse_args, train_prior

from conftest import TINY_VQVAE, put_in_hub_cache
from launching import accelerate_launch, run, script
from test_audio_vqvae import TINY_AUDIO
from test_speech_data import speech_folder, tone, wav_bytes  # noqa: F401  (fixture)


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

SEGMENT = 128  # samples per segment: 32 codes of the tiny model (hop 4)
# The VQ-VAE names its speakers in another order than the data's sorted folders: codes carry the VQ-VAE's ids.
SPEAKERS = ["bert", "alice"]
TINY_PRIOR = ["--hidden_channels", "8", "--num_layers", "2", "--kernel_size", "3", "--skip_channels", "8"]


@pytest.fixture
def speech_vqvae_folder(tmp_path):
    folder = tmp_path / "speech-vqvae"
    config = AudioVQVAEConfig(**{**TINY_AUDIO, "num_speakers": 2, "speaker_names": SPEAKERS})
    AudioVQVAEModel(config).eval().save_pretrained(folder)
    return folder


def extraction_flags(vqvae, folder, output_dir, *extra: str) -> list[str]:
    return ["--vqvae", str(vqvae), "--train_data_dir", str(folder), "--output_dir", str(output_dir),
            "--segment_length", str(SEGMENT), "--validation_fraction", "0.25", "--max_unreadable_fraction", "0.2",
            "--batch_size", "16", *extra]


@pytest.fixture
def speech_codes(tmp_path, speech_folder, speech_vqvae_folder):  # noqa: F811
    """The codes of the audio folder (two speakers, one clip shorter than a segment, one that is not audio)."""
    (speech_folder / "alice" / "short.wav").write_bytes(wav_bytes(tone(300.0, 50 / 16000)))
    folder = tmp_path / "speech-codes"
    extract_speech_codes(parse_extract_speech_args(extraction_flags(speech_vqvae_folder, speech_folder, folder)))
    return folder


def test_extracted_codes_are_the_model_codes_of_each_segment_with_its_speaker(speech_codes, speech_folder, speech_vqvae_folder):  # noqa: F811
    info = json.loads((speech_codes / "codes_info.json").read_text())
    assert info["vqvae"] == str(speech_vqvae_folder.resolve())
    assert (info["num_embeddings"], info["grid_height"], info["grid_width"]) == (16, 1, SEGMENT // 4)
    codes = load_from_disk(str(speech_codes))
    assert codes["train"].features["label"].names == SPEAKERS

    # The same clips, split as the extraction split them, each scaled to the model's loudness target as in training,
    # cut into segments and encoded by the model directly.
    model = AudioVQVAEModel.from_pretrained(speech_vqvae_folder).eval()
    assert model.config.normalize_loudness
    target_db = model.config.loudness_target_db
    speech = load_speech_datasets(SpeechDataArguments(train_data_dir=str(speech_folder), validation_fraction=0.25))
    for name in ("train", "validation"):
        segments, speakers = [], []
        for row in getattr(speech, name):
            try:
                waveform = decode_for_model(row["audio"], 16000, target_db)
            except ValueError:
                continue  # the file that is not audio: skipped and counted
            count = max(1, len(waveform) // SEGMENT)
            waveform = np.pad(waveform, (0, max(0, SEGMENT - len(waveform))))
            segments += [waveform[index * SEGMENT : (index + 1) * SEGMENT] for index in range(count)]
            speakers += [SPEAKERS.index(speech.speaker_names[row["label"]])] * count
        expected = model.encode(torch.from_numpy(np.stack(segments))).indices
        split = codes[name].with_format("torch")[:]
        assert split["codes"].shape == (len(segments), 1, SEGMENT // 4)
        assert torch.equal(split["codes"][:, 0].long(), expected)
        assert split["label"].tolist() == speakers


@pytest.mark.slow
def test_two_processes_extract_the_codes_one_process_does(tmp_path, speech_codes, speech_folder, speech_vqvae_folder):  # noqa: F811
    output_dir = tmp_path / "two-processes"
    run([*accelerate_launch(num_processes=2), script("extract_speech_codes.py"),
         *extraction_flags(speech_vqvae_folder, speech_folder, output_dir, "--batch_size", "7")], timeout=240)
    one, two = load_from_disk(str(speech_codes)), load_from_disk(str(output_dir))
    for name in ("train", "validation"):
        assert two[name].to_dict() == one[name].to_dict()
    assert (output_dir / "codes_info.json").read_text() == (speech_codes / "codes_info.json").read_text()


def test_a_prior_trains_on_speech_codes_and_its_pipeline_generates_speech_offline(tmp_path, speech_codes, offline_hub):
    output_dir = tmp_path / "speech-prior"
    metrics = train_prior(parse_args([
        "--codes_dataset", str(speech_codes), "--output_dir", str(output_dir), "--train_batch_size", "8",
        "--max_train_steps", "3", "--sample_images_per_row", "2", "--report_to", "none", *TINY_PRIOR,
    ]))
    assert metrics["train_steps"] == 3 and 0 < metrics["validation_bits_per_code"] < 8  # uniform: log2(16) = 4
    assert (output_dir / "samples.png").is_file()

    pipeline = AudioVQVAEPipeline.from_pretrained(output_dir / "pipeline")
    prior = pipeline.prior.config
    assert (prior.num_embeddings, prior.grid_height, prior.grid_width, prior.num_classes) == (16, 1, SEGMENT // 4, 2)
    assert [prior.id2label[index] for index in range(2)] == SPEAKERS

    def generate(pipeline, seed):
        return pipeline(batch_size=2, speaker=["alice", "bert"], generator=torch.Generator().manual_seed(seed)).audios

    audios = generate(pipeline, 0)
    assert audios.shape == (2, SEGMENT) and np.abs(audios).max() <= 1
    assert np.array_equal(audios, generate(pipeline, 0)) and not np.array_equal(audios, generate(pipeline, 1))

    put_in_hub_cache(offline_hub, "org/speech-generator", output_dir / "pipeline")
    from_hub = AudioVQVAEPipeline.from_pretrained("org/speech-generator")
    assert np.array_equal(generate(from_hub, 0), audios)

    run([sys.executable, script("generate_speech.py"), "--pipeline", str(output_dir / "pipeline"), "--speaker", "alice",
         "bert", "--seed", "0", "--output_dir", str(tmp_path / "generated")])
    written = sorted(path.name for path in (tmp_path / "generated").iterdir())
    assert written == ["0-alice.wav", "1-bert.wav"]
    assert np.allclose(decode_audio(str(tmp_path / "generated" / "0-alice.wav")), audios[0], atol=1 / 32767)


def test_bad_inputs_name_the_problem(tmp_path, speech_folder, speech_vqvae_folder, speech_codes):  # noqa: F811
    def extract(vqvae, *extra):
        return extract_speech_codes(parse_extract_speech_args(extraction_flags(vqvae, speech_folder, tmp_path / "out", *extra)))

    image_vqvae = tmp_path / "image-vqvae"
    VQVAEModel(VQVAEConfig(**TINY_VQVAE)).save_pretrained(image_vqvae)
    with pytest.raises(ValueError, match="is not an audio VQ-VAE .*scripts/extract_codes.py"):
        extract(image_vqvae)
    with pytest.raises(ValueError, match="--segment_length 130 is not a multiple of the audio VQ-VAE's hop length 4"):
        extract(speech_vqvae_folder, "--segment_length", "130")
    strangers = tmp_path / "strangers"
    AudioVQVAEModel(AudioVQVAEConfig(**{**TINY_AUDIO, "num_speakers": 2, "speaker_names": ["ann", "alice"]})).save_pretrained(strangers)
    with pytest.raises(ValueError, match=r"the speakers \['bert'\] of the data are unknown to the audio VQ-VAE"):
        extract(strangers)

    def train(*flags):
        return train_prior(parse_args([*flags, "--output_dir", str(tmp_path / "run"), "--max_train_steps", "1",
                                       "--report_to", "none", *TINY_PRIOR]))

    with pytest.raises(ValueError, match="is an audio VQ-VAE: extract the codes of its speech first"):
        train("--vqvae", str(speech_vqvae_folder))
    for name, fields, message in (
        ("other-k", dict(num_embeddings=32, grid_width=SEGMENT // 4), "the prior has num_embeddings=32 but the VQ-VAE's codebook has 16"),
        ("other-l", dict(num_embeddings=16, grid_width=8), f"the prior models 1x8 code grids .* latent grid is 1x{SEGMENT // 4}"),
    ):
        PixelCNNPriorConfig(grid_height=1, **fields).save_pretrained(tmp_path / name)
        with pytest.raises(ValueError, match=message):
            train("--codes_dataset", str(speech_codes), "--prior_config", str(tmp_path / name))
    with pytest.raises(ValueError, match=rf"K=16 and 1x{SEGMENT // 4} grids, but the VQ-VAE .*image-vqvae' has K=16 and 4x4"):
        train("--codes_dataset", str(speech_codes), "--vqvae", str(image_vqvae))
    # A speaker-conditioned prior needs as many classes as the audio VQ-VAE has speakers.
    three_speakers = tmp_path / "three-speakers"
    AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO)).save_pretrained(three_speakers)
    with pytest.raises(ValueError, match=r"num_classes equal to the VQ-VAE's num_speakers \(3\), got 2"):
        train("--codes_dataset", str(speech_codes), "--vqvae", str(three_speakers))

import json
import re
import sys

import PIL.Image
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from safetensors.torch import load_file

from hf_vqvae import PixelCNNPriorConfig, PixelCNNPriorModel, TransformerPriorModel, VQVAEConfig, VQVAEModel, VQVAEPipeline
from hf_vqvae.commands.extract_codes import extract_codes
from hf_vqvae.commands.extract_codes import parse_args as parse_extract_args
from hf_vqvae.data.codes import CodesInfo, save_codes
from hf_vqvae.training.checkpoints import IncompatibleCheckpointError
from hf_vqvae.training.recipes.prior import parse_args, train_prior

from conftest import TINY_VQVAE
from launching import accelerate_launch, kill_when_exists, run, script


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

TINY_PRIOR = ["--hidden_channels", "8", "--num_layers", "2", "--kernel_size", "3", "--skip_channels", "8"]


@pytest.fixture
def codes_folder(tmp_path, image_folder, tiny_vqvae_folder):
    """The codes of the 48 images of `image_folder` (38 train, 10 validation, labels a and b) by the
    tiny VQ-VAE: 4x4 grids of K=16 codes."""
    folder = tmp_path / "codes"
    extract_codes(parse_extract_args([
        "--vqvae", str(tiny_vqvae_folder), "--train_data_dir", str(image_folder), "--output_dir", str(folder),
        "--cache_dir", str(tmp_path / "datasets-cache"), "--validation_fraction", "0.2",
    ]))
    return folder


def prior_run(output_dir, *source: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Flags of a run of a tiny prior in batches of 4, reading the codes that `source` names."""
    return [*source, "--output_dir", str(output_dir), "--train_batch_size", "4", "--report_to", "none",
            "--sample_images_per_row", "3", *TINY_PRIOR, *extra]


def test_accelerate_launch_writes_prior_checkpoints_metrics_samples_and_pipeline(tmp_path, codes_folder):
    output_dir = tmp_path / "run"
    run([*accelerate_launch(), script("train_prior.py"), *prior_run(
        output_dir, "--codes_dataset", str(codes_folder),
        extra=("--max_train_steps", "4", "--checkpointing_steps", "2", "--validation_steps", "2", "--report_to", "tensorboard"),
    )])
    prior = PixelCNNPriorModel.from_pretrained(output_dir)
    config = prior.config
    assert (config.num_embeddings, config.grid_height, config.grid_width, config.num_layers) == (16, 4, 4, 2)
    assert config.num_classes == 2 and {int(key): value for key, value in config.id2label.items()} == {0: "a", 1: "b"}
    assert sorted(path.name for path in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    # The recipe's learning rate decays to 0 by the last update, so the final weights are not one draw of Adam's noise
    # at full step size (which made a class's samples tens of levels too dark or too bright; docs/benchmarks.md).
    assert torch.load(output_dir / "checkpoint-4" / "scheduler.bin", weights_only=True)["_last_lr"] == [0.0]
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["train_steps"] == 4 and metrics["validation_grids"] == 10
    assert 0 < metrics["validation_bits_per_code"] < 8  # log2(16) = 4 bits is a uniform guess
    samples = PIL.Image.open(output_dir / "samples.png")
    # One row of 3 samples per class, the class names in a column at the left.
    assert samples.height == 2 * 16 and samples.width > 3 * 16
    assert list((output_dir / "logs").rglob("events.out.tfevents.*"))
    card = (output_dir / "README.md").read_text()
    assert "![samples](samples.png)" in card and f"| validation_bits_per_code | {metrics['validation_bits_per_code']} |" in card

    pipeline = VQVAEPipeline.from_pretrained(output_dir / "pipeline")
    assert torch.equal(pipeline.prior.pixelcnn.code_embedding.weight, prior.pixelcnn.code_embedding.weight)
    images = pipeline(batch_size=2, class_labels="b", generator=torch.Generator().manual_seed(0)).images
    assert [image.size for image in images] == [(16, 16), (16, 16)]
    run([sys.executable, script("sample.py"), "--pipeline", str(output_dir / "pipeline"), "--output", str(tmp_path / "grid.png"),
         "--images_per_row", "2"])
    grid = PIL.Image.open(tmp_path / "grid.png")
    assert grid.height == 2 * 16 and grid.width > 2 * 16  # two classes, labelled at the left


def test_learning_rate_decays_by_default_and_a_flag_keeps_it_constant():
    # As in diffusers' training scripts, --lr_scheduler picks the schedule; the prior's default decays (cosine).
    assert parse_args(["--codes_dataset", "codes"]).optimization.lr_scheduler == "cosine"
    assert parse_args(["--codes_dataset", "codes", "--lr_scheduler", "constant"]).optimization.lr_scheduler == "constant"


def test_encoding_images_at_the_start_trains_as_the_codes_dataset_does(tmp_path, image_folder, tiny_vqvae_folder, codes_folder):
    images = ["--vqvae", str(tiny_vqvae_folder), "--train_data_dir", str(image_folder), "--validation_fraction", "0.2",
              "--cache_dir", str(tmp_path / "datasets-cache")]
    steps = ("--max_train_steps", "5")
    from_images = train_prior(parse_args(prior_run(tmp_path / "from-images", *images, extra=steps)))
    from_codes = train_prior(parse_args(prior_run(tmp_path / "from-codes", "--codes_dataset", str(codes_folder), extra=steps)))
    assert from_images == from_codes
    weights = load_file(tmp_path / "from-images" / "model.safetensors")
    for name, tensor in load_file(tmp_path / "from-codes" / "model.safetensors").items():
        assert torch.equal(weights[name], tensor), name


def test_two_processes_encode_and_train_in_sync(tmp_path, image_folder, tiny_vqvae_folder):
    output_dir = tmp_path / "run"
    result = run([*accelerate_launch(num_processes=2), script("train_prior.py"), *prior_run(
        output_dir, "--vqvae", str(tiny_vqvae_folder), "--train_data_dir", str(image_folder),
        "--cache_dir", str(tmp_path / "datasets-cache"), extra=("--max_train_steps", "3", "--unconditional"),
    )], timeout=240)
    fingerprints = re.search(r"weights sha256 by process: 0=(\w+) 1=(\w+)", result.stderr)
    assert fingerprints and fingerprints.group(1) == fingerprints.group(2), result.stderr[-2000:]
    assert re.search(r"training on \d+ code grids: 3 updates of 8 \(4 per device x 2 processes x 1 accumulation\)", result.stderr)
    assert PixelCNNPriorModel.from_pretrained(output_dir).config.num_classes == 0


def test_killed_run_resumes_to_the_same_weights(tmp_path, codes_folder):
    """SIGKILL a run after its first checkpoint and resume it with `latest`: the final weights equal an
    uninterrupted run's bit for bit (checkpoints mid-epoch, a loader worker, accumulation)."""
    flags = ("--max_train_steps", "60", "--checkpointing_steps", "3", "--gradient_accumulation_steps", "2",
             "--dataloader_num_workers", "1", "--validation_steps", "7")
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run([sys.executable, script("train_prior.py"), *prior_run(reference, "--codes_dataset", str(codes_folder), extra=flags)])
    command = [sys.executable, script("train_prior.py"), *prior_run(interrupted, "--codes_dataset", str(codes_folder), extra=flags)]
    kill_when_exists(command, interrupted / "checkpoint-3")
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"

    result = run([*command, "--resume_from_checkpoint", "latest"])
    assert re.search(r"resumed from .*checkpoint-(\d+) at step", result.stderr)
    final, expected = load_file(interrupted / "model.safetensors"), load_file(reference / "model.safetensors")
    assert final.keys() == expected.keys()
    for name in expected:
        assert torch.equal(final[name], expected[name]), name


def test_push_uploads_prior_samples_and_card_with_bits_per_code(tmp_path, codes_folder, recorded_uploads):
    metrics = train_prior(parse_args(prior_run(
        tmp_path / "run", "--codes_dataset", str(codes_folder),
        extra=("--max_train_steps", "2", "--push_to_hub", "--hub_model_id", "org/tiny-prior", "--hub_token", "hf_test"),
    )))
    upload = recorded_uploads[-1]
    assert upload["repo_id"] == "org/tiny-prior"
    assert {"config.json", "model.safetensors", "samples.png", "metrics.json", "README.md"} == set(upload["files"])
    card = upload["files"]["README.md"].decode()
    assert f"| validation_bits_per_code | {metrics['validation_bits_per_code']} |" in card
    assert "![samples](samples.png)" in card and "| updates | 2 |" in card and "datasets:" not in card


def codes_dataset(folder, codes, labels, info: CodesInfo, label_feature=None) -> str:
    """A codes data set written by hand: one grid per split, for the bad inputs."""
    features = Features({"codes": List(List(Value("int16"))), "label": label_feature or Value("int64")})
    split = Dataset.from_dict({"codes": codes, "label": labels}, features=features)
    save_codes(DatasetDict(train=split, validation=split), info, folder)
    return str(folder)


def test_bad_inputs_name_the_problem(tmp_path, tiny_vqvae_folder, codes_folder):
    def train(*flags):
        return train_prior(parse_args(prior_run(tmp_path / "run", *flags, extra=("--max_train_steps", "1"))))

    with pytest.raises(ValueError, match="pass --codes_dataset .* or --vqvae"):
        train()
    other = tmp_path / "other-vqvae"
    VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, "num_embeddings": 32})).save_pretrained(other)
    with pytest.raises(ValueError, match=r"K=16 and 4x4 grids, but the VQ-VAE .*other-vqvae' has K=32"):
        train("--codes_dataset", str(codes_folder), "--vqvae", str(other))
    PixelCNNPriorConfig(num_embeddings=32, grid_height=4, grid_width=4).save_pretrained(tmp_path / "prior-config")
    with pytest.raises(ValueError, match=r"the prior has num_embeddings=32 but the VQ-VAE's codebook has 16 codes"):
        train("--codes_dataset", str(codes_folder), "--prior_config", str(tmp_path / "prior-config"))
    with pytest.raises(ValueError, match=r"the prior has num_embeddings=512 but the VQ-VAE's codebook has 16 codes"):
        train("--codes_dataset", str(codes_folder), "--prior_preset", "cifar10")
    with pytest.raises(ValueError, match=r"--label_column 'class' is not a column of the data set; its columns are \['codes', 'label'\]"):
        train("--codes_dataset", str(codes_folder), "--label_column", "class")

    info = CodesInfo(str(tiny_vqvae_folder), num_embeddings=16, grid_height=2, grid_width=2, image_dataset="hand-made")
    tiny_vqvae_2x2 = tmp_path / "vqvae-2x2"
    VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, "sample_size": 8})).save_pretrained(tiny_vqvae_2x2)
    info.vqvae = str(tiny_vqvae_2x2)
    out_of_range = codes_dataset(tmp_path / "out-of-range", [[[0, 1], [2, 16]]], [0], info)
    with pytest.raises(ValueError, match=r"codes of the 'train' split lie in \[0, 16\], outside \[0, 16\)"):
        train("--codes_dataset", out_of_range)
    missing_label = codes_dataset(tmp_path / "missing-label", [[[0, 1], [2, 3]]], [-1], info, ClassLabel(names=["x", "y"]))
    with pytest.raises(ValueError, match=r"class labels of the train split \(column 'label'\) must lie in \[0, 2\), found \[-1\]"):
        train("--codes_dataset", missing_label)
    # Unconditional training ignores the labels.
    assert train("--codes_dataset", missing_label, "--unconditional")["train_steps"] == 1


TINY_TRANSFORMER = ["--prior_type", "transformer", "--decoder_hidden_size", "16", "--decoder_num_layers", "2",
                    "--decoder_num_heads", "2"]


def transformer_prior_run(output_dir, *source: str, extra: tuple[str, ...] = ()) -> list[str]:
    """`prior_run`'s flags with a tiny transformer prior in place of the PixelCNN."""
    return [*source, "--output_dir", str(output_dir), "--train_batch_size", "4", "--report_to", "none",
            "--sample_images_per_row", "3", *TINY_TRANSFORMER, *extra]


def test_a_transformer_prior_trains_resumes_pushes_and_its_pipeline_samples_it(tmp_path, codes_folder, recorded_uploads):
    flags = ("--max_train_steps", "6", "--checkpointing_steps", "3", "--class_dropout_prob", "0.25",
             "--push_to_hub", "--hub_model_id", "org/tiny-transformer-prior", "--hub_token", "hf_test")
    metrics = train_prior(parse_args(transformer_prior_run(tmp_path / "run", "--codes_dataset", str(codes_folder), extra=flags)))
    prior = TransformerPriorModel.from_pretrained(tmp_path / "run")
    config = prior.config
    assert (config.num_embeddings, config.grid_height, config.grid_width, config.num_classes) == (16, 4, 4, 2)
    assert config.class_dropout_prob == 0.25 and {int(key): value for key, value in config.id2label.items()} == {0: "a", 1: "b"}
    decoder = config.decoder_config
    assert (decoder.model_type, decoder.hidden_size, decoder.num_hidden_layers, decoder.num_attention_heads) == ("llama", 16, 2, 2)
    assert 0 < metrics["validation_bits_per_code"] < 8 and metrics["train_steps"] == 6
    upload = recorded_uploads[-1]
    assert upload["repo_id"] == "org/tiny-transformer-prior" and "Transformer prior" in upload["commit_message"]
    assert "`llama` causal language model (2 layers of width 16)" in upload["files"]["README.md"].decode()

    pipeline = VQVAEPipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert isinstance(pipeline.prior, TransformerPriorModel)
    assert torch.equal(pipeline.prior.get_input_embeddings().weight, prior.get_input_embeddings().weight)
    codes = pipeline(class_labels="b", batch_size=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert codes.shape == (2, 4, 4)

    # A run resumed from the mid-run checkpoint (its decoder config checked against this run's) ends with the
    # weights of the run that went through, label dropout included.
    train_prior(parse_args(transformer_prior_run(
        tmp_path / "resumed", "--codes_dataset", str(codes_folder),
        extra=("--max_train_steps", "6", "--class_dropout_prob", "0.25",
               "--resume_from_checkpoint", str(tmp_path / "run" / "checkpoint-3")),
    )))
    final, expected = load_file(tmp_path / "resumed" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    assert final.keys() == expected.keys() and all(torch.equal(final[name], expected[name]) for name in expected)
    with pytest.raises(IncompatibleCheckpointError, match=r"decoder_config: checkpoint .*'num_hidden_layers': 2"):
        train_prior(parse_args(transformer_prior_run(
            tmp_path / "other", "--codes_dataset", str(codes_folder),
            extra=("--max_train_steps", "6", "--decoder_num_layers", "3",
                   "--resume_from_checkpoint", str(tmp_path / "run" / "checkpoint-3")),
        )))


def test_transformer_prior_flags_are_checked(tmp_path, codes_folder):
    with pytest.raises(ValueError, match=r"--hidden_channels sets the architecture of a pixelcnn prior; this run trains a transformer prior"):
        parse_args(transformer_prior_run(tmp_path, "--codes_dataset", str(codes_folder), extra=("--hidden_channels", "8")))
    with pytest.raises(ValueError, match=r"--decoder_num_layers, --class_dropout_prob set the architecture of a transformer prior"):
        parse_args(prior_run(tmp_path, "--codes_dataset", str(codes_folder), extra=("--decoder_num_layers", "2", "--class_dropout_prob", "0.1")))
    with pytest.raises(ValueError, match="class_dropout_prob"):
        parse_args(transformer_prior_run(tmp_path, "--codes_dataset", str(codes_folder), extra=("--class_dropout_prob", "1")))
    with pytest.raises(SystemExit):
        parse_args(["--prior_type", "rnn", "--codes_dataset", str(codes_folder)])


def test_transformer_prior_config_from_a_saved_config_a_preset_or_the_codes(tmp_path):
    from hf_vqvae import TransformerPriorConfig
    from hf_vqvae.training.recipes.prior import build_transformer_prior_config

    saved = TransformerPriorConfig(
        num_embeddings=16, grid_height=4, grid_width=4, class_dropout_prob=0.2,
        decoder_config=dict(model_type="gpt2", n_embd=32, n_layer=3, n_head=4),
    )
    saved.save_pretrained(tmp_path / "config")
    flags = parse_args(["--codes_dataset", "x", "--prior_type", "transformer", "--prior_config", str(tmp_path / "config"),
                        "--decoder_num_layers", "2"]).model
    config = build_transformer_prior_config(flags, (16, 4, 4), 2, {0: "a", 1: "b"})
    decoder = config.decoder_config
    assert (decoder.model_type, decoder.n_layer, decoder.n_embd, decoder.vocab_size) == ("gpt2", 2, 32, 19)
    assert config.class_dropout_prob == 0.2 and config.num_classes == 2 and config.label2id == {"a": 0, "b": 1}

    preset = parse_args(["--codes_dataset", "x", "--prior_type", "transformer", "--prior_preset", "cifar10"]).model
    config = build_transformer_prior_config(preset, (16, 4, 4), 0, None)
    assert (config.num_embeddings, config.grid_height, config.grid_width, config.decoder_config.num_hidden_layers) == (512, 8, 8, 6)
    default = parse_args(["--codes_dataset", "x", "--prior_type", "transformer", "--decoder_hidden_size", "64"]).model
    config = build_transformer_prior_config(default, (16, 4, 4), 0, None)
    assert (config.num_embeddings, config.grid_height, config.decoder_config.hidden_size, config.decoder_config.intermediate_size) == (16, 4, 64, 192)

"""The training recipes' settings: typed dataclasses parsed by HfArgumentParser from flags or a JSON / YAML file,
the same values as 0.1.0's argparse flags, and recipes callable from Python."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_vqvae.commands.extract_codes import parse_args as parse_extract_args
from hf_vqvae.data.images import ImageDataArguments
from hf_vqvae.training.arguments import OptimizationArguments, OutputArguments, arguments_dict
from hf_vqvae.training.recipes.prior import parse_args as parse_prior_args
from hf_vqvae.training.recipes.vqvae import VQVAEModelArguments, VQVAETrainingArguments, parse_args, train_vqvae

from conftest import TINY_VQVAE
from launching import run, script


FIXTURES = Path(__file__).parent / "fixtures"
PARSERS = {"train.py": parse_args, "train_prior.py": parse_prior_args, "extract_codes.py": parse_extract_args}
TABLE = json.loads((FIXTURES / "flags_parsed_by_0.1.0.json").read_text())

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def flat(arguments) -> dict:
    """Every flag's value, the hub token included, as 0.1.0's argparse namespace held them."""
    values = {}
    for group in arguments_dict(arguments):
        values.update(vars(getattr(arguments, group)))
    return values


# What changed on purpose since 0.1.0: flags added (absent from its table) and defaults changed, with the reason.
ADDED_SINCE_0_1_0 = {
    # the transformer prior (docs/prior.md, "A transformer prior")
    "train_prior.py": {"prior_type", "decoder_hidden_size", "decoder_num_layers", "decoder_num_heads", "class_dropout_prob"},
}
DEFAULTS_CHANGED_SINCE_0_1_0 = {
    # a constant rate left the last weights one draw of Adam's noise: one class's samples 41 levels too dark
    # (docs/prior.md); `--lr_scheduler constant` gives 0.1.0's run
    "train_prior.py": {"lr_scheduler": ("constant", "cosine")},
}


@pytest.mark.parametrize(
    "script_name, case", [(name, case) for name, cases in TABLE.items() for case in cases],
    ids=lambda value: value if isinstance(value, str) else str(len(value["argv"])),
)
def test_every_flag_parses_to_the_value_it_had_before(script_name, case):
    parsed = flat(PARSERS[script_name](case["argv"]))
    for flag in ADDED_SINCE_0_1_0.get(script_name, ()):
        assert flag not in case["parsed"], flag
        parsed.pop(flag)
    for flag, (before, now) in DEFAULTS_CHANGED_SINCE_0_1_0.get(script_name, {}).items():
        if f"--{flag}" not in case["argv"]:
            assert (case["parsed"][flag], parsed[flag]) == (before, now), flag
            parsed[flag] = before
    assert parsed == case["parsed"]


def test_the_table_covers_every_flag_of_every_script():
    """Each script's own flags appear in its cases; the flags it shares with train.py in train.py's."""
    def given(cases):
        return {flag[2:] for case in cases for flag in case["argv"] if flag.startswith("--")}

    for script_name, cases in TABLE.items():
        assert set(cases[0]["parsed"]) <= given(cases) | given(TABLE["train.py"]), script_name
    assert given(TABLE["train.py"]) == set(TABLE["train.py"][0]["parsed"])


def write_settings(path: Path, values: dict) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(values))
    else:
        import yaml

        path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_an_arguments_file_gives_the_settings_of_the_same_flags(tmp_path, suffix):
    flags = ["--resolution", "64", "--random_flip", "--learning_rate", "0.001", "--max_train_steps", "7",
             "--config_overrides", "hidden_channels=64", "update_rule=loss", "--output_dir", "out", "--lr_scheduler", "cosine"]
    values = {"resolution": 64, "random_flip": True, "learning_rate": 0.001, "max_train_steps": 7,
              "config_overrides": ["hidden_channels=64", "update_rule=loss"], "output_dir": "out", "lr_scheduler": "cosine",
              "max_train_samples": None}
    from_file = parse_args([str(write_settings(tmp_path / f"run{suffix}", values))])
    assert from_file == parse_args(flags)
    assert from_file.optimization.num_train_epochs == 12  # the recipe's defaults fill the rest


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_wrong_value_in_a_file_fails_as_the_same_flag_does(tmp_path, suffix, capsys):
    with pytest.raises(ValueError, match=r"--learning_rate must lie in \(0, inf\), got -1.0") as from_flags:
        parse_args(["--learning_rate", "-1"])
    with pytest.raises(ValueError) as from_file:
        parse_args([str(write_settings(tmp_path / f"bad{suffix}", {"learning_rate": -1.0}))])
    assert str(from_file.value) == str(from_flags.value)

    # A wrong type is argparse's error, naming the flag, from both.
    with pytest.raises(SystemExit):
        parse_args(["--train_batch_size", "many"])
    flag_error = capsys.readouterr().err.splitlines()[-1]
    with pytest.raises(SystemExit):
        parse_args([str(write_settings(tmp_path / f"type{suffix}", {"train_batch_size": "many"}))])
    assert capsys.readouterr().err.splitlines()[-1] == flag_error
    assert "argument --train_batch_size/--train-batch-size: invalid int value: 'many'" in flag_error

    with pytest.raises(SystemExit):
        parse_args([str(write_settings(tmp_path / f"unknown{suffix}", {"learning_rte": 0.1}))])
    assert "unrecognized arguments: --learning_rte" in capsys.readouterr().err


def test_groups_check_their_values_when_built_in_python():
    with pytest.raises(ValueError, match=r"--adam_beta1 must lie in \[0, 1\), got 2"):
        OptimizationArguments(adam_beta1=2)
    with pytest.raises(ValueError, match=r"--dataloader_num_workers must be >= 0, got -1"):
        ImageDataArguments(dataloader_num_workers=-1)
    with pytest.raises(ValueError, match=r"--learning_rate must lie in \(0, inf\), got nan"):
        OptimizationArguments(learning_rate=float("nan"))
    with pytest.raises(ValueError, match=r"'hidden' is not a VQVAEConfig field"):
        VQVAEModelArguments(config_overrides=["hidden=3"])


def test_help_shows_every_default_in_its_group():
    result = subprocess.run([sys.executable, script("train.py"), "--help"], capture_output=True, text=True, check=True)
    for group in ("data:", "model:", "optimisation:", "checkpoints and logging:", "hub:"):
        assert f"\n{group}\n" in result.stdout
    text = " ".join(result.stdout.split())
    assert "Adam's learning rate (paper: 2e-4). (default: 0.0002)" in text
    assert "Where the model, checkpoints and logs go. (default: outputs/vqvae)" in text
    assert "Passes over the training split. (default: 12)" in text


def test_a_recipe_called_from_python_writes_what_the_command_writes(tmp_path, image_folder):
    flags = [
        "--train_data_dir", str(image_folder), "--cache_dir", str(tmp_path / "cache"), "--resolution", "16",
        "--train_batch_size", "4", "--max_train_steps", "3", "--checkpointing_steps", "3", "--report_to", "none",
        "--hub_token", "hf_secret", "--config_overrides",
        *(f"{name}={value}" for name, value in TINY_VQVAE.items() if name != "sample_size"),
    ]
    run([sys.executable, script("train.py"), *flags, "--output_dir", str(tmp_path / "command")])
    arguments = VQVAETrainingArguments(
        data=ImageDataArguments(train_data_dir=str(image_folder), cache_dir=str(tmp_path / "cache"), resolution=16),
        model=VQVAEModelArguments(
            config_overrides=[f"{name}={value}" for name, value in TINY_VQVAE.items() if name != "sample_size"]
        ),
        optimization=OptimizationArguments(train_batch_size=4, max_train_steps=3),
        output=OutputArguments(output_dir=str(tmp_path / "python"), checkpointing_steps=3, report_to="none"),
    )
    arguments.hub.hub_token = "hf_secret"
    train_vqvae(arguments)

    command, python = tmp_path / "command", tmp_path / "python"
    for name in ("model.safetensors", "checkpoint-3/model.safetensors"):
        expected, got = load_file(command / name), load_file(python / name)
        assert all(torch.equal(got[key], expected[key]) for key in expected), name
    for name in ("config.json", "metrics.json", "preprocessor_config.json"):
        assert (python / name).read_text() == (command / name).read_text(), name

    saved = json.loads((command / "training_arguments.json").read_text())
    assert saved == json.loads((command / "checkpoint-3" / "training_arguments.json").read_text())
    assert saved["optimization"]["max_train_steps"] == 3 and saved["data"]["resolution"] == 16
    assert "hub_token" not in saved["hub"]
    assert not any("hf_secret" in path.read_text(errors="ignore") for path in command.rglob("*.json"))
    # The saved settings are a file of flags again: the same settings, less the token.
    flattened = {name: value for group in saved.values() for name, value in group.items()}
    expected = parse_args([*flags, "--output_dir", str(command)])
    expected.hub.hub_token = None
    assert parse_args([str(write_settings(tmp_path / "again.json", flattened))]) == expected

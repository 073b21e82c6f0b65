"""What a user meets at the command line and on the Hub pages the scripts write: sample.py's checks and
grid, the cards' snippets and metadata, and (slow) the README's commands exactly as written."""

import re
import subprocess
import sys

import pytest
import torch

from hf_vqvae import PixelCNNPriorConfig, PixelCNNPriorModel, VQVAEConfig, VQVAEModel, VQVAEPipeline
from hf_vqvae.model_card_utils import is_hub_dataset_id
from hf_vqvae.models.pixelcnn_prior.model_card_pixelcnn_prior import prior_model_card
from hf_vqvae.pipelines.pipeline_cards import pipeline_model_card

from conftest import TINY_VQVAE
from launching import ROOT, run, script, subprocess_env


def tiny_pipeline(num_classes: int) -> VQVAEPipeline:
    config = VQVAEConfig(**TINY_VQVAE)
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(
        num_embeddings=config.num_embeddings, grid_height=4, grid_width=4, hidden_channels=8, num_layers=2, kernel_size=3,
        skip_channels=8, num_classes=num_classes, id2label={0: "cats", 1: "dogs"} if num_classes else None,
    ))
    return VQVAEPipeline(vqvae=VQVAEModel(config).eval(), prior=prior.eval())


@pytest.mark.parametrize("flags, message", [
    (["--images_per_row", "0"], "--images_per_row must be >= 1, got 0"),
    (["--num_rows", "-2"], "--num_rows must be >= 1, got -2"),
    (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
    (["--output", "samples.txt"], "needs an image extension PIL writes"),
])
def test_sample_py_checks_its_flags_before_loading_anything(flags, message, tmp_path):
    result = subprocess.run(
        [sys.executable, script("sample.py"), "--pipeline", str(tmp_path / "does-not-matter"), *flags],
        capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path,
    )
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr


def options_lacking_a_description_or_default(help_text: str) -> list[str]:
    """The options of an argparse `--help` whose entry has no description or no "(default: ...)"; a required flag
    (unbracketed in the usage line) has no default to show."""
    usage, options = help_text.split("\n\n")[0], help_text.partition("\noptions:\n")[2]
    lacking = []
    for entry in re.split(r"\n(?=  -)", options.split("\n\n")[0]):
        flag, *rest = entry.split()
        if flag.startswith("-h"):
            continue
        words = [word for word in " ".join(rest).split("(default: ")[0].split() if not word.isupper() and "{" not in word]
        required = re.search(rf"(?<!\[){flag}\b", usage) is not None
        if not words or not (required or "(default: " in " ".join(entry.split())):
            lacking.append(flag)
    return lacking


# Prints every script's `--help` as JSON, from one interpreter: one import of the package for all of them.
HELP_OF_EVERY_SCRIPT = """
import contextlib, importlib.util, io, json, runpy, sys
from pathlib import Path
helps = {}
for path in sorted(Path(sys.argv[1]).glob("*.py")):
    if path.name == "demo.py" and importlib.util.find_spec("gradio") is None:
        continue  # the demo extra is not installed
    sys.argv, text = [str(path), "--help"], io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        runpy.run_path(str(path), run_name="__main__")
    helps[path.name] = text.getvalue()
print(json.dumps(helps))
"""


def test_every_script_describes_every_option_with_its_default():
    import json

    helps = json.loads(run([sys.executable, "-c", HELP_OF_EVERY_SCRIPT, str(ROOT / "scripts")]).stdout)
    assert {"train.py", "sample.py", "make_space.py", "generate_speech.py", "make_speech_data.py"} <= set(helps)
    lacking = {name: options_lacking_a_description_or_default(text) for name, text in helps.items()}
    assert all("\noptions:\n" in text for text in helps.values())
    assert {name: flags for name, flags in lacking.items() if flags} == {}


def test_sample_py_writes_a_labelled_grid_under_outputs_by_default(tmp_path):
    tiny_pipeline(num_classes=2).save_pretrained(tmp_path / "pipeline")
    result = subprocess.run(
        [sys.executable, script("sample.py"), "--pipeline", str(tmp_path / "pipeline"), "--images_per_row", "3"],
        capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, check=True,
    )
    import PIL.Image

    grid = PIL.Image.open(tmp_path / "outputs" / "samples.png")
    assert "outputs/samples.png" in result.stdout
    assert grid.height == 2 * 16 and grid.width > 3 * 16
    # The label column is drawn: dark text pixels left of the first sample, none in an unlabelled grid.
    label_column = torch.from_numpy(__import__("numpy").asarray(grid.convert("L"))[:, : grid.width - 3 * 16].copy())
    assert int((label_column < 128).sum()) > 10
    unconditional = tiny_pipeline(num_classes=0).sample_grid(images_per_row=3, num_rows=2)
    assert unconditional.size == (3 * 16, 2 * 16)


def test_cards_name_what_exists_and_tag_conditioning():
    conditional, unconditional = tiny_pipeline(2), tiny_pipeline(0)
    card = str(prior_model_card(conditional.prior.config, "outputs/prior", dataset_name="scikit-image photographs"))
    assert 'PixelCNNPriorModel.from_pretrained("outputs/prior")' in card
    # The Hub has no task for generation conditioned on a class: the generation task, and a tag that says so.
    assert "pipeline_tag: unconditional-image-generation" in card and "- class-conditional-image-generation" in card
    assert "datasets:" not in card  # a description, not a Hub id
    card = str(pipeline_model_card(unconditional.vqvae.config, unconditional.prior.config, "org/p", dataset_name="uoft-cs/cifar10"))
    assert "pipeline_tag: unconditional-image-generation" in card and "datasets:\n- uoft-cs/cifar10" in card
    assert "class-conditional-image-generation" not in card
    assert is_hub_dataset_id("cifar10") and is_hub_dataset_id("org/name") and not is_hub_dataset_id("/tmp")
    assert not is_hub_dataset_id("a folder/with spaces")


@pytest.mark.slow
def test_the_readme_quick_start_commands_as_written():
    """The README's main-job commands, run from the repository root exactly as a new user types them."""
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip() for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL) for line in block.splitlines()
                if line.strip().startswith(("accelerate launch scripts/", "python scripts/"))]
    assert commands[:3] == [
        "accelerate launch scripts/train.py",
        "accelerate launch scripts/train_prior.py --vqvae outputs/vqvae",
        "python scripts/sample.py --pipeline outputs/prior/pipeline --output samples.png",
    ]
    for command in commands[:3]:
        run(["bash", "-c", command], timeout=3600)
    VQVAEModel.from_pretrained(ROOT / "outputs" / "vqvae")
    VQVAEPipeline.from_pretrained(ROOT / "outputs" / "prior" / "pipeline")
    assert (ROOT / "samples.png").is_file()

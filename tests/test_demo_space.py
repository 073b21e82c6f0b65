"""The Space folder of the demo (`scripts/make_space.py`, `commands/demo/space.py`): its README's front matter is what
the Hub reads for a Space and validates offline, its app file exists and imports into the demo over the pipelines by
Hub id, and a push creates a Gradio Space and uploads the folder."""

import importlib.util
import subprocess
import sys

import pytest
import yaml
from huggingface_hub import SpaceCard, SpaceCardData

from hf_vqvae.commands.demo import space
from hf_vqvae.version import REPOSITORY_URL

from conftest import put_in_hub_cache
from launching import script, subprocess_env
from test_demo import tiny_pipeline


# The values the Hub accepts for a Space's colours (its Spaces configuration reference).
SPACE_COLOURS = frozenset({"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"})
SCRIPT_TIMEOUT_S = 120


def front_matter(readme) -> dict:
    return yaml.safe_load(readme.read_text().split("---\n")[1])


def test_the_front_matter_is_what_the_hub_reads_for_a_gradio_space(tmp_path):
    folder = space.write_space(tmp_path / "space", ["org/photos", "org/world"], sdk_version="5.49.1", trajectories="org/paths")
    metadata = front_matter(folder / "README.md")
    assert metadata["sdk"] == "gradio" and metadata["sdk_version"] == "5.49.1" and metadata["app_file"] == "app.py"
    assert metadata["title"] == "hf-vqvae demo" and metadata["license"] == "apache-2.0"
    assert metadata["models"] == ["org/photos", "org/world"] and metadata["datasets"] == ["org/paths"]
    assert {metadata["colorFrom"], metadata["colorTo"]} <= SPACE_COLOURS and metadata["pinned"] is False

    # What huggingface_hub checks without the Hub: the YAML loads as SpaceCardData (errors raise) and round-trips.
    card = SpaceCard.load(folder / "README.md", ignore_metadata_errors=False)
    assert isinstance(card.data, SpaceCardData) and card.data.to_dict() == metadata
    assert SpaceCardData(**metadata).to_dict() == metadata
    assert "`python scripts/demo.py --pipeline org/photos org/world`" in card.text
    assert (folder / "requirements.txt").read_text() == f"hf-vqvae @ git+{REPOSITORY_URL}\n"


def test_the_app_file_exists_and_imports_into_the_demo_over_the_pipelines(tmp_path, offline_hub):
    gradio = pytest.importorskip("gradio", reason="needs the demo extra: pip install 'hf-vqvae[demo]'")
    tiny_pipeline().save_pretrained(tmp_path / "pipeline")
    put_in_hub_cache(offline_hub, "org/photos", tmp_path / "pipeline")
    folder = space.write_space(tmp_path / "space", ["org/photos"])
    assert front_matter(folder / "README.md")["sdk_version"] == gradio.__version__  # the Gradio run here

    app_file = folder / front_matter(folder / "README.md")["app_file"]
    spec = importlib.util.spec_from_file_location("space_app", app_file)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)  # builds the demo, launches nothing (not run as __main__)
    tabs = [block.label for block in app.demo.blocks.values() if isinstance(block, gradio.Tab)]
    assert isinstance(app.demo, gradio.Blocks) and tabs == ["image: org/photos"]


def test_the_script_writes_and_pushes_a_gradio_space(tmp_path, recorded_uploads):
    space.main(["--pipeline", "org/photos", "--sdk_version", "5.49.1", "--output_dir", str(tmp_path / "space"),
                "--push_to_hub", "--space_id", "org/demo"])
    created, uploaded = recorded_uploads
    assert created == {"create_repo": "org/demo", "repo_type": "space", "space_sdk": "gradio", "private": False, "exist_ok": True}
    assert uploaded["repo_id"] == "org/demo" and uploaded["repo_type"] == "space"
    assert set(uploaded["files"]) == {"README.md", "app.py", "requirements.txt"}
    assert b"load_demo(['org/photos'], trajectories_name=None)" in uploaded["files"]["app.py"]

    run = subprocess.run([sys.executable, script("make_space.py"), "--help"], env=subprocess_env(), capture_output=True,
                         text=True, timeout=SCRIPT_TIMEOUT_S)
    assert run.returncode == 0 and "--space_id" in run.stdout


@pytest.mark.parametrize("arguments, message", [
    (dict(pipelines=[]), "a Space needs at least one pipeline, by Hub id"),
    (dict(pipelines=["org/a", "outputs/prior/pipeline"]), "must be Hub ids (org/name), got ['outputs/prior/pipeline']"),
    (dict(pipelines=["org/a"], sdk_version="latest"), "sdk_version must be a Gradio release number such as 5.49.1, got 'latest'"),
    (dict(pipelines=["org/a"], trajectories="/data/paths"), "pass a Hub data set id, got '/data/paths'"),
])
def test_bad_input_names_the_problem(arguments, message, tmp_path):
    with pytest.raises(ValueError) as error:
        space.write_space(tmp_path / "space", **{"sdk_version": "5.49.1", **arguments})
    assert message in str(error.value)

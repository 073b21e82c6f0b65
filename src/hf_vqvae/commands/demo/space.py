"""A Hugging Face Space that serves the demo: a folder with the Space's card (`README.md`, whose front matter the Hub
reads: title, `sdk: gradio`, `sdk_version`, `app_file`), its app file (the package's demo over pipelines given by Hub
id) and its `requirements.txt` (hf-vqvae from its repository; the Space brings Gradio itself). `scripts/make_space.py`
writes it and can push it."""

import argparse
import importlib.metadata
import re
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard, SpaceCardData

from ...argument_checks import HelpWithDefaults
from ...model_card_utils import is_hub_dataset_id, render_model_card
from ...version import REPOSITORY_URL


APP_FILE = "app.py"

DEFAULT_TITLE = "hf-vqvae demo"

# The app file: the Space runs it as a script; `demo` at module level is also what Gradio's reload mode looks for.
APP_SOURCE = '''"""The hf-vqvae demo on a Space (written by scripts/make_space.py)."""

from hf_vqvae.commands.demo.app import load_demo


demo = load_demo({pipelines!r}, trajectories_name={trajectories!r})

if __name__ == "__main__":
    demo.launch()
'''

# A Space reads its sdk_version as a release number of Gradio.
GRADIO_VERSION = re.compile(r"\d+\.\d+(\.\d+)?")


def installed_gradio_version() -> str:
    """The version of the Gradio installed here, the one the demo was run and tested with."""
    try:
        return importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError as error:
        raise ValueError(
            'gradio is not installed, so the Space\'s sdk_version is unknown: pip install "hf-vqvae[demo]" or pass '
            "sdk_version"
        ) from error


def space_card(pipelines: list[str], title: str, sdk_version: str, trajectories: str | None = None) -> SpaceCard:
    """The Space's README.md: its front matter (title, sdk, sdk_version, app_file, license, the pipelines as `models`,
    the trajectories as `datasets`, tags) and a few lines on what it serves."""
    card_data = SpaceCardData(
        title=title, sdk="gradio", sdk_version=sdk_version, app_file=APP_FILE, license="apache-2.0",
        models=list(pipelines), datasets=[trajectories] if is_hub_dataset_id(trajectories) else None,
        tags=["hf-vqvae", "vq-vae"], emoji="🧩", colorFrom="indigo", colorTo="gray", pinned=False,
    )
    return render_model_card(
        "space", card_data, card_class=SpaceCard, title=title, pipelines=pipelines, trajectories=trajectories,
        app_file=APP_FILE, sdk_version=sdk_version, repository_url=REPOSITORY_URL,
    )


def write_space(
    output_dir: str | Path,
    pipelines: list[str],
    title: str = DEFAULT_TITLE,
    sdk_version: str | None = None,
    trajectories: str | None = None,
) -> Path:
    """Write the Space's folder into `output_dir`: README.md, the app file and requirements.txt. `pipelines` are Hub
    ids (a Space cannot read this machine's folders); `sdk_version` defaults to the installed Gradio's."""
    if not pipelines:
        raise ValueError("a Space needs at least one pipeline, by Hub id")
    local = [name for name in pipelines if not is_hub_dataset_id(name)]
    if local:
        raise ValueError(
            f"a Space loads its pipelines from the Hub, so they must be Hub ids (org/name), got {local}: push them "
            "first (--push_to_hub --hub_model_id org/name) and pass those ids"
        )
    if trajectories is not None and not is_hub_dataset_id(trajectories):
        raise ValueError(f"a Space loads its trajectories from the Hub: pass a Hub data set id, got {trajectories!r}")
    sdk_version = sdk_version or installed_gradio_version()
    if not GRADIO_VERSION.fullmatch(sdk_version):
        raise ValueError(f"sdk_version must be a Gradio release number such as 5.49.1, got {sdk_version!r}")
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    space_card(pipelines, title, sdk_version, trajectories).save(folder / "README.md")
    (folder / APP_FILE).write_text(APP_SOURCE.format(pipelines=list(pipelines), trajectories=trajectories))
    (folder / "requirements.txt").write_text(f"hf-vqvae @ git+{REPOSITORY_URL}\n")
    return folder


def push_space(folder: str | Path, space_id: str, private: bool = False) -> str:
    """Create the Space `space_id` (Gradio) if needed and upload `folder` to it; the commit's URL."""
    api = HfApi()
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=space_id, repo_type="space", folder_path=str(folder), commit_message="Upload the hf-vqvae demo"
    )
    return commit.commit_url


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument("--pipeline", nargs="+", required=True, help="Hub ids of the pipelines, one tab each.")
    parser.add_argument("--trajectories", default=None, help="Hub id of a trajectories data set for the video tabs.")
    parser.add_argument("--title", default=DEFAULT_TITLE, help="The Space's title on its card.")
    parser.add_argument("--sdk_version", default=None, help="Gradio version of the Space; None: the installed one.")
    parser.add_argument("--output_dir", default="outputs/space", help="Where the Space's folder is written.")
    parser.add_argument("--push_to_hub", action="store_true", help="Create the Space and upload the folder.")
    parser.add_argument("--space_id", default=None, help="org/name of the Space (needed with --push_to_hub).")
    parser.add_argument("--private", action="store_true", help="Make the pushed Space private.")
    args = parser.parse_args(argv)
    if args.push_to_hub and not args.space_id:
        parser.error("--push_to_hub needs --space_id org/name")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folder = write_space(args.output_dir, args.pipeline, args.title, args.sdk_version, args.trajectories)
    print(f"Space folder written to {folder}")
    if args.push_to_hub:
        print(f"pushed to the Space {args.space_id}: {push_space(folder, args.space_id, args.private)}")

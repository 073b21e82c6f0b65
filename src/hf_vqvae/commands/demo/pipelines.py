"""The demo's pipelines: any of the package's pipeline classes, loaded by Hub id or from a folder, each shown by the tab
of the kind of pipeline it is."""

import json
from pathlib import Path

import torch

from ... import pipelines
from ...loading import local_pipeline_folder
from ...pipelines import AudioVQVAEPipeline, HierarchicalVQVAEPipeline, VideoPredictionPipeline, VQVAEPipeline
from ...pipelines.pipeline_utils import HubDiffusionPipeline


# The tab that shows a pipeline, by its class: a subclass (another prior or quantizer inside) gets its parent's tab.
TABS = (
    (HierarchicalVQVAEPipeline, "hierarchy"),
    (VQVAEPipeline, "image"),
    (AudioVQVAEPipeline, "speech"),
    (VideoPredictionPipeline, "video"),
)

# The pipelines the README's commands write that the demo shows, when no --pipeline is given (those that exist).
QUICK_START_PIPELINES = (
    "outputs/prior/pipeline",
    "outputs/world-prior/pipeline",
    "outputs/speech-prior/pipeline",
    "outputs/world-video-prior/pipeline",
)


def pipeline_class(folder: Path) -> type[HubDiffusionPipeline]:
    """The package's pipeline class that `folder/model_index.json` names (`_class_name`, a name or, as saved since
    0.2.0, `[entry module, name]`), looked up among the classes `hf_vqvae.pipelines` exports."""
    class_name = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    if isinstance(class_name, list):
        class_name = class_name[-1]
    exported = {name: getattr(pipelines, name) for name in pipelines.__all__}
    classes = {name: value for name, value in exported.items() if isinstance(value, type) and issubclass(value, HubDiffusionPipeline)}
    if class_name not in classes:
        raise ValueError(
            f"{folder}/model_index.json names the pipeline class {class_name!r}, which is none of hf-vqvae's "
            f"pipelines ({', '.join(sorted(classes))})"
        )
    return classes[class_name]


def tab_of(pipeline) -> str:
    """The kind of tab that shows `pipeline`: "image", "hierarchy", "speech" or "video"."""
    for base, tab in TABS:
        if isinstance(pipeline, base):
            return tab
    shown = ", ".join(base.__name__ for base, _ in TABS)
    raise ValueError(f"the demo has no tab for a {type(pipeline).__name__}; it shows {shown} and their subclasses")


def tab_title(name_or_path: str) -> str:
    """How a tab names its pipeline: a Hub id or a relative folder as given; an absolute folder by its last two parts
    (`prior/pipeline`), so that the page shows no path of this machine."""
    path = Path(name_or_path)
    return "/".join(path.parts[-2:]) if path.is_absolute() else name_or_path


def load_pipeline(name_or_path: str, device: str | None = None, cache_dir: str | None = None) -> HubDiffusionPipeline:
    """A pipeline from a folder or a Hub id (the snapshot honours the cache and offline mode), of the class its
    model_index.json names, on `device` (default: cuda when there is a GPU, else cpu), its progress bars off."""
    folder = Path(local_pipeline_folder(name_or_path, {"cache_dir": cache_dir}))
    pipeline = pipeline_class(folder).from_pretrained(folder)
    tab_of(pipeline)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def quick_start_pipelines(root: Path = Path(".")) -> list[str]:
    """The README's pipelines that exist under `root`; an error naming them when none does."""
    found = [str(root / path) for path in QUICK_START_PIPELINES if (root / path / "model_index.json").is_file()]
    if not found:
        raise FileNotFoundError(
            f"no --pipeline given and none of the README's pipelines exists under {root.resolve()} "
            f"({', '.join(QUICK_START_PIPELINES)}): pass --pipeline with a folder or a Hub id"
        )
    return found

"""What every model card of the package shares: rendering a template of `model_cards/` (Jinja, through
huggingface_hub), the metadata every card carries (what the Hub reads: library, task, tags, license, data sets, and a
model-index of the measured figures), the configuration table, and the tags of a generator. Each model's card is built
in its folder (`models/<name>/model_card_<name>.py`), each pipeline's in `pipelines/pipeline_cards.py`."""

import re
from importlib import resources
from pathlib import Path

from huggingface_hub import CardData, EvalResult, ModelCard, ModelCardData, RepoCard

from .configuration_utils import PACKAGE_KEYS
from .version import INSTALL_COMMAND, REPOSITORY_URL


# `name` or `org/name`, as the Hub spells repository ids.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")

# The Hub's task of a generator of images. It has none for generation conditioned on a class (a `tags` entry says so).
IMAGE_GENERATION = "unconditional-image-generation"

# Figures of a run's metrics that count what was trained or evaluated on, not how well the model does: they stay in the
# card's tables and out of its model-index.
COUNTS = frozenset({"train_steps", "validation_images", "validation_grids", "validation_clips", "validation_windows"})

VALIDATION_PREFIX = "validation_"


def render_model_card(
    template: str, card_data: CardData, card_class: type[RepoCard] = ModelCard, **fields
) -> RepoCard:
    """A card (a model's, or another `card_class`: a Space's) from `model_cards/<template>.md` (Jinja, rendered by
    huggingface_hub)."""
    template_path = resources.files("hf_vqvae.model_cards") / f"{template}.md"
    with resources.as_file(template_path) as path:
        return card_class.from_template(card_data, template_path=str(path), **fields)


def is_hub_dataset_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub data set id (`name` or `org/name`) rather than a local folder or a
    description: only those belong in a card's `datasets:` metadata, which the Hub links."""
    return bool(name) and HUB_ID.fullmatch(name) is not None and not Path(name).exists()


def image_generation_tags(num_classes: int) -> list[str]:
    """The tags that say whether a generator of images (pipeline tag `IMAGE_GENERATION`) is conditioned on a class."""
    return ["class-conditional-image-generation"] if num_classes else []


def dataset_type(dataset_name: str | None) -> str:
    """How a model-index names the data a figure was measured on: its Hub id, else a slug of its description (never a
    local path: `images (local folder)` -> `images-local-folder`)."""
    if is_hub_dataset_id(dataset_name):
        return dataset_name
    slug = re.sub(r"[^a-z0-9]+", "-", Path(dataset_name or "unnamed data").name.lower()).strip("-")
    return slug or "unnamed-data"


def evaluation_results(metrics: dict, task_type: str, dataset_name: str | None) -> list[EvalResult]:
    """The measured figures of `metrics` (name -> number; not the `COUNTS`) as the Hub's evaluation results: the
    `validation_` ones are held-out figures of the validation split (`validation_psnr` -> metric type `psnr`)."""
    results = []
    for name, value in metrics.items():
        if name in COUNTS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        held_out = name.startswith(VALIDATION_PREFIX)
        metric = name.removeprefix(VALIDATION_PREFIX)
        results.append(EvalResult(
            task_type=task_type,
            dataset_type=dataset_type(dataset_name),
            dataset_name=dataset_name or "unnamed data",
            dataset_split="validation" if held_out else None,
            metric_type=metric,
            metric_name=("held-out " if held_out else "") + metric.replace("_", " "),
            metric_value=value,
        ))
    return results


def config_fields(config) -> dict:
    """The config's non-default fields, for the card's configuration table (not the versions and package
    pointers every config.json carries)."""
    skipped = {"transformers_version", *PACKAGE_KEYS}
    return {key: value for key, value in sorted(config.to_diff_dict().items()) if key not in skipped}


def package_model_card(
    template: str,
    repo_id: str,
    *,
    tags: list[str],
    pipeline_tag: str,
    dataset_name: str | None = None,
    metrics: dict[str, float] | None = None,
    image_path: str | None = None,
    **fields,
) -> ModelCard:
    """Metadata every hf-vqvae card carries (`metrics` also as its model-index), plus the fields its template shows:
    among them `install_command` and `repository_url`, which say where the package comes from."""
    model_name = Path(repo_id).name
    results = evaluation_results(metrics or {}, pipeline_tag, dataset_name)
    card_data = ModelCardData(
        library_name="hf-vqvae",
        license="apache-2.0",
        tags=["hf-vqvae", "vq-vae", *tags],
        pipeline_tag=pipeline_tag,
        datasets=[dataset_name] if is_hub_dataset_id(dataset_name) else None,
        # The model-index names the model; without figures the card has neither.
        model_name=model_name if results else None,
        eval_results=results or None,
    )
    return render_model_card(
        template,
        card_data,
        model_name=model_name,
        repo_id=repo_id,
        dataset_name=dataset_name,
        metrics=metrics or {},
        image_path=image_path,
        install_command=INSTALL_COMMAND,
        repository_url=REPOSITORY_URL,
        **fields,
    )

"""What every model card of the package shares: rendering a template of `model_cards/` (Jinja, through
huggingface_hub), the metadata every card carries, the configuration table, and the tags of a generator. Each model's
card is built in its folder (`models/<name>/model_card_<name>.py`), each pipeline's in `pipelines/pipeline_cards.py`."""

import re
from importlib import resources
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .configuration_utils import PACKAGE_KEYS


# `name` or `org/name`, as the Hub spells repository ids.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def render_model_card(template: str, card_data: ModelCardData, **fields) -> ModelCard:
    """A model card from `model_cards/<template>.md` (Jinja, rendered by huggingface_hub)."""
    template_path = resources.files("hf_vqvae.model_cards") / f"{template}.md"
    with resources.as_file(template_path) as path:
        return ModelCard.from_template(card_data, template_path=str(path), **fields)


def is_hub_dataset_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub data set id (`name` or `org/name`) rather than a local folder or a
    description: only those belong in a card's `datasets:` metadata, which the Hub links."""
    return bool(name) and HUB_ID.fullmatch(name) is not None and not Path(name).exists()


def image_generation_tags(num_classes: int) -> tuple[list[str], str | None]:
    """The tags and Hub pipeline tag of a generator: unconditional, or conditioned on a class (for which
    the Hub has no pipeline tag)."""
    if num_classes:
        return ["class-conditional-image-generation"], None
    return [], "unconditional-image-generation"


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
    pipeline_tag: str | None,
    dataset_name: str | None = None,
    metrics: dict[str, float] | None = None,
    image_path: str | None = None,
    **fields,
) -> ModelCard:
    """Metadata every hf-vqvae card carries, plus the fields its template shows."""
    card_data = ModelCardData(
        library_name="hf-vqvae",
        license="apache-2.0",
        tags=["hf-vqvae", "vq-vae", *tags],
        pipeline_tag=pipeline_tag,
        datasets=[dataset_name] if is_hub_dataset_id(dataset_name) else None,
    )
    return render_model_card(
        template,
        card_data,
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        dataset_name=dataset_name,
        metrics=metrics or {},
        image_path=image_path,
        **fields,
    )

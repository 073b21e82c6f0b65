"""Model cards and uploads to the Hugging Face Hub, shared by models, pipeline and scripts."""

import json
import re
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData, snapshot_download

from .configuration_utils import PACKAGE_KEYS
from .loading import check_local_path_exists, missing_folder_error


# `name` or `org/name`, as the Hub spells repository ids.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def render_model_card(template: str, card_data: ModelCardData, **fields) -> ModelCard:
    """A model card from `model_cards/<template>.md` (Jinja, rendered by huggingface_hub)."""
    template_path = resources.files("hf_vqvae.model_cards") / f"{template}.md"
    with resources.as_file(template_path) as path:
        return ModelCard.from_template(card_data, template_path=str(path), **fields)


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload with hf-vqvae",
    revision: str | None = None,
    create_pr: bool = False,
):
    """Create `repo_id` if needed and upload `folder` in one commit; returns the commit info.

    `HfApi` is created here (not bound at import) so tests can patch `HfApi.create_repo` and
    `HfApi.upload_folder` and see exactly what would be uploaded.
    """
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        revision=revision,
        create_pr=create_pr,
    )


def local_pipeline_folder(pretrained_model_name_or_path, kwargs: dict) -> str:
    """A pipeline's local folder: the path itself, or the snapshot of a Hub id.

    diffusers refuses components from a third-party package when given a Hub id, so the package's
    pipelines resolve it here with `snapshot_download` (which honours the cache and offline mode)
    and load the local folder. Pops the download arguments (`cache_dir`, `revision`, `token`,
    `local_files_only`) from `kwargs`, leaving those of `DiffusionPipeline.from_pretrained`.
    A name that is no local folder and no reachable Hub id, or a folder missing a component's subfolder,
    is an error that says which.
    """
    download_arguments = {name: kwargs.pop(name, None) for name in ("cache_dir", "revision", "token")}
    local_files_only = kwargs.pop("local_files_only", False)
    folder = Path(pretrained_model_name_or_path)
    if folder.is_file():
        raise NotADirectoryError(f"{folder} is a file; a pipeline is a folder with model_index.json")
    if not folder.is_dir():
        check_local_path_exists(pretrained_model_name_or_path)
        try:
            folder = Path(snapshot_download(
                str(pretrained_model_name_or_path), local_files_only=local_files_only, **download_arguments
            ))
        except (OSError, ValueError) as error:
            raise missing_folder_error(pretrained_model_name_or_path, error) from error
    check_pipeline_components(folder, passed=kwargs)
    return str(folder)


def check_pipeline_components(folder: Path, passed: dict) -> None:
    """Raise naming the component whose subfolder is missing (diffusers names only the root folder)."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a pipeline folder: it has no model_index.json (a model folder loads with its model "
            "class's from_pretrained)"
        )
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{index_path} is damaged (not valid JSON): {error}") from error
    for name, entry in index.items():
        if name.startswith("_") or name in passed or not isinstance(entry, list) or entry[0] is None:
            continue
        if not (folder / name).is_dir():
            raise FileNotFoundError(
                f"the pipeline folder {folder} has no {name}/ subfolder: model_index.json lists the component "
                f"{name!r} ({entry[1]}); copy that folder back or pass {name}=... to from_pretrained"
            )


def push_with_card(
    save: Callable[[Path], None],
    card: Callable[[str], ModelCard],
    repo_id: str,
    **push_kwargs,
):
    """Save into a temporary folder, write the card built for `repo_id` as README.md, upload.

    The card is written into the folder rather than pushed with `ModelCard.push_to_hub`, which
    validates over the network.
    """
    with tempfile.TemporaryDirectory() as folder:
        save(Path(folder))
        card(repo_id).save(Path(folder) / "README.md")
        return push_folder_to_hub(folder, repo_id, **push_kwargs)


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


def _config_fields(config) -> dict:
    """The config's non-default fields, for the card's configuration table (not the versions and package
    pointers every config.json carries)."""
    skipped = {"transformers_version", *PACKAGE_KEYS}
    return {key: value for key, value in sorted(config.to_diff_dict().items()) if key not in skipped}


def _model_card(
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


def vqvae_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VQVAEModel`: usage snippet, figures, a reconstruction grid, the config.

    `card_fields`: `dataset_name`, `metrics` (name -> value), `image_path` (relative to the repo).
    """
    return _model_card(
        "vqvae", repo_id, tags=["image-tokenizer"], pipeline_tag="image-to-image",
        config=config, config_fields=_config_fields(config), latent_size=config.latent_size, **card_fields,
    )


def prior_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `PixelCNNPriorModel`; `card_fields` as for `vqvae_model_card`."""
    tags, pipeline_tag = image_generation_tags(config.num_classes)
    return _model_card(
        "prior", repo_id, tags=["pixelcnn", "autoregressive-prior", *tags], pipeline_tag=pipeline_tag,
        config=config, config_fields=_config_fields(config), **card_fields,
    )


def pipeline_model_card(vqvae_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VQVAEPipeline`; `card_fields` as for `vqvae_model_card`."""
    tags, pipeline_tag = image_generation_tags(prior_config.num_classes)
    return _model_card(
        "pipeline", repo_id, tags=["pixelcnn", "image-generation", *tags], pipeline_tag=pipeline_tag,
        vqvae=vqvae_config, prior=prior_config, grid=f"{prior_config.grid_height}x{prior_config.grid_width}",
        **card_fields,
    )


def hierarchical_vqvae_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `HierarchicalVQVAEModel` (the second stage); `card_fields` as for `vqvae_model_card`."""
    return _model_card(
        "hierarchical_vqvae", repo_id, tags=["pixelcnn", "hierarchical-vq-vae"], pipeline_tag="unconditional-image-generation",
        config=config, config_fields=_config_fields(config), **card_fields,
    )


def video_prior_model_card(config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VideoPriorModel`; `card_fields` as for `vqvae_model_card` (and `training`)."""
    return _model_card(
        "video_prior", repo_id, tags=["pixelcnn", "video-prediction", "world-model"], pipeline_tag="image-to-video",
        config=config, config_fields=_config_fields(config), **card_fields,
    )


def hierarchical_pipeline_model_card(vqvae_config, stage2_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `HierarchicalVQVAEPipeline`; `card_fields` as for `vqvae_model_card`."""
    return _model_card(
        "hierarchical_pipeline", repo_id, tags=["pixelcnn", "hierarchical-vq-vae", "image-generation"],
        pipeline_tag="unconditional-image-generation", vqvae=vqvae_config, stage2=stage2_config, prior=prior_config,
        **card_fields,
    )


def video_pipeline_model_card(vqvae_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of a `VideoPredictionPipeline`; `card_fields` as for `vqvae_model_card`."""
    return _model_card(
        "video_pipeline", repo_id, tags=["pixelcnn", "video-prediction", "world-model"], pipeline_tag="image-to-video",
        vqvae=vqvae_config, prior=prior_config, grid=f"{prior_config.grid_height}x{prior_config.grid_width}",
        **card_fields,
    )


def audio_vqvae_model_card(config, repo_id: str, *, audio_path: str | None = None, **card_fields) -> ModelCard:
    """The card of an `AudioVQVAEModel`: usage (reconstruction, speaker conversion), figures, the speakers, the
    config; `card_fields` as for `vqvae_model_card`, and `audio_path` (a sample's file, relative to the repo)."""
    return _model_card(
        "audio_vqvae", repo_id, tags=["audio", "speech", "wavenet", "voice-conversion"], pipeline_tag="audio-to-audio",
        config=config, config_fields=_config_fields(config), audio_path=audio_path, **card_fields,
    )


def audio_pipeline_model_card(vqvae_config, prior_config, repo_id: str, **card_fields) -> ModelCard:
    """The card of an `AudioVQVAEPipeline` (its prior may be None); `card_fields` as for `audio_vqvae_model_card`."""
    return _model_card(
        "audio_pipeline", repo_id, tags=["audio", "speech", "wavenet", "voice-conversion"],
        pipeline_tag="audio-to-audio", vqvae=vqvae_config, prior=prior_config, **card_fields,
    )

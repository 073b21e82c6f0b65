"""Every card the package writes: its usage snippet runs against the saved folder it names, and its front matter is
what the Hub reads (library, task, tags, license, data sets as Hub ids, a model-index of the measured figures),
checked offline with what huggingface_hub can check without the Hub's validate-yaml endpoint: the card's YAML parses
into `ModelCardData` without ignoring errors, the model-index parses into `EvalResult`s, and the data round-trips."""

import re

import pytest
import yaml
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_vqvae import (
    AudioVQVAEConfig, AudioVQVAEModel, AudioVQVAEPipeline, HierarchicalVQVAEConfig, HierarchicalVQVAEModel,
    HierarchicalVQVAEPipeline, PixelCNNPriorConfig, PixelCNNPriorModel, VideoPredictionPipeline, VideoPriorConfig,
    VideoPriorModel, VQVAEConfig, VQVAEModel, VQVAEPipeline,
)
from hf_vqvae.model_card_utils import COUNTS, dataset_type
from hf_vqvae.version import INSTALL_COMMAND

from conftest import TINY_VQVAE
from test_audio_vqvae import TINY_AUDIO
from test_hierarchy import TINY_STAGE2, TINY_TOP_PRIOR
from test_video_prior import TINY_VIDEO_PRIOR


# The Hub's tasks (`pipeline_tag` values), as huggingface.js lists them (packages/tasks/src/pipelines.ts); the Hub's
# validation refuses any other.
HUB_TASKS = frozenset({
    "text-classification", "token-classification", "table-question-answering", "question-answering",
    "zero-shot-classification", "translation", "summarization", "feature-extraction", "text-generation", "fill-mask",
    "sentence-similarity", "text-to-speech", "text-to-audio", "automatic-speech-recognition", "audio-to-audio",
    "audio-classification", "audio-text-to-text", "voice-activity-detection", "depth-estimation",
    "image-classification", "object-detection", "image-segmentation", "text-to-image", "image-to-text",
    "image-to-image", "image-to-video", "unconditional-image-generation", "video-classification",
    "reinforcement-learning", "robotics", "tabular-classification", "tabular-regression", "tabular-to-text",
    "table-to-text", "multiple-choice", "text-ranking", "text-retrieval", "time-series-forecasting", "text-to-video",
    "image-text-to-text", "image-text-to-image", "image-text-to-video", "visual-question-answering",
    "document-question-answering", "zero-shot-image-classification", "graph-ml", "mask-generation",
    "zero-shot-object-detection", "text-to-3d", "image-to-3d", "image-feature-extraction", "video-text-to-text",
    "keypoint-detection", "visual-document-retrieval", "any-to-any", "video-to-video", "other",
})

IMAGE_METRICS = {
    "validation_mse": 0.0135, "validation_psnr": 27.4, "validation_perplexity": 301.5, "validation_codes_used": 497,
    "train_steps": 2, "validation_images": 64,
}
PRIOR_METRICS = {"validation_bits_per_code": 4.03, "train_steps": 2, "validation_grids": 32}
SPEECH_METRICS = {
    "validation_bits_per_sample": 5.1, "validation_codes_used": 12, "bits_per_second_of_codes": 1000.0,
    "train_steps": 2, "validation_clips": 4,
}


def tiny_prior(**fields) -> PixelCNNPriorModel:
    base = dict(num_embeddings=16, grid_height=4, grid_width=4, hidden_channels=8, num_layers=2, kernel_size=3, skip_channels=8)
    return PixelCNNPriorModel(PixelCNNPriorConfig(**{**base, **fields})).eval()


def tiny_vqvae() -> VQVAEModel:
    return VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()


def tiny_audio_vqvae() -> AudioVQVAEModel:
    return AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO)).eval()


def tiny_video_prior() -> VideoPriorModel:
    return VideoPriorModel(VideoPriorConfig(**TINY_VIDEO_PRIOR, action_names=["stay", "left", "right"])).eval()


# Each card the package writes: what it describes (saved into a folder whose path the card's snippet loads), the
# Hub task it declares, the metrics a training run would give it.
CARDS = {
    "vqvae": (tiny_vqvae, "image-feature-extraction", IMAGE_METRICS),
    "prior": (lambda: tiny_prior(num_classes=2), "unconditional-image-generation", PRIOR_METRICS),
    "audio_vqvae": (tiny_audio_vqvae, "audio-to-audio", SPEECH_METRICS),
    "hierarchical_vqvae": (
        lambda: HierarchicalVQVAEModel(HierarchicalVQVAEConfig(**TINY_STAGE2)).eval(), "unconditional-image-generation",
        {"validation_bits_per_grid": 30.2, "validation_codes_used": 7, "train_steps": 2, "validation_grids": 8},
    ),
    "video_prior": (
        tiny_video_prior, "image-to-video",
        {**PRIOR_METRICS, "validation_bits_per_code_shuffled_actions": 4.4, "validation_windows": 16},
    ),
    "pipeline": (
        lambda: VQVAEPipeline(vqvae=tiny_vqvae(), prior=tiny_prior(num_classes=2)), "unconditional-image-generation",
        PRIOR_METRICS,
    ),
    "audio_pipeline": (
        lambda: AudioVQVAEPipeline(vqvae=tiny_audio_vqvae(), prior=tiny_prior(grid_height=1, grid_width=6, num_classes=3)),
        "audio-to-audio", PRIOR_METRICS,
    ),
    "hierarchical_pipeline": (
        lambda: HierarchicalVQVAEPipeline(
            vqvae=tiny_vqvae(), stage2=HierarchicalVQVAEModel(HierarchicalVQVAEConfig(**TINY_STAGE2)).eval(),
            prior=PixelCNNPriorModel(PixelCNNPriorConfig(**TINY_TOP_PRIOR)).eval(),
        ),
        "unconditional-image-generation", PRIOR_METRICS,
    ),
    "video_pipeline": (
        lambda: VideoPredictionPipeline(vqvae=tiny_vqvae(), video_prior=tiny_video_prior()), "image-to-video", PRIOR_METRICS,
    ),
}


def saved_with_card(name: str, folder, **card_fields) -> ModelCard:
    """The model or pipeline `name` of `CARDS`, saved into `folder`, and the card it writes naming that folder."""
    build, _, metrics = CARDS[name]
    model = build()
    model.save_pretrained(folder)
    return model.model_card(str(folder), metrics=metrics, **card_fields)


def front_matter(card: ModelCard) -> dict:
    return yaml.safe_load(re.match(r"---\n(.*?)\n---\n", str(card), flags=re.DOTALL).group(1))


@pytest.mark.parametrize("name", CARDS)
def test_the_usage_snippet_runs_against_the_folder_it_names(name, tmp_path, monkeypatch):
    folder = tmp_path / name
    card = saved_with_card(name, folder, dataset_name="uoft-cs/cifar10")
    snippets = re.findall(r"```python\n(.*?)```", str(card), flags=re.DOTALL)
    assert len(snippets) == 1 and f'from_pretrained("{folder}")' in snippets[0]
    monkeypatch.chdir(tmp_path)  # where a snippet writes what it makes (the video pipeline's GIF)
    exec(compile(snippets[0], f"<the usage snippet of the {name} card>", "exec"), {"__name__": "__card__"})


@pytest.mark.parametrize("name", CARDS)
def test_the_front_matter_is_what_the_hub_reads_and_validates_offline(name, tmp_path):
    _, task, metrics = CARDS[name]
    card = saved_with_card(name, tmp_path / name, dataset_name="uoft-cs/cifar10")
    metadata = front_matter(card)
    assert metadata["library_name"] == "hf-vqvae" and metadata["license"] == "apache-2.0"
    assert metadata["pipeline_tag"] == task and task in HUB_TASKS
    assert {"hf-vqvae", "vq-vae"} <= set(metadata["tags"]) and all(isinstance(tag, str) for tag in metadata["tags"])
    assert metadata["datasets"] == ["uoft-cs/cifar10"]

    # What huggingface_hub checks without the Hub: the YAML loads as ModelCardData (errors raise, none ignored) and
    # round-trips, and the model-index parses into evaluation results.
    reloaded = ModelCard(str(card), ignore_metadata_errors=False)
    assert isinstance(reloaded.data, ModelCardData) and reloaded.data.to_dict() == metadata
    assert ModelCardData(**metadata).to_dict() == metadata
    model_name, results = model_index_to_eval_results(metadata["model-index"])
    assert model_name == name
    measured = {key: value for key, value in metrics.items() if key not in COUNTS}
    assert {result.metric_type: result.metric_value for result in results} == {
        key.removeprefix("validation_"): value for key, value in measured.items()
    }
    for result in results:
        assert result.task_type == task and result.dataset_type == "uoft-cs/cifar10"
        assert result.dataset_split == ("validation" if f"validation_{result.metric_type}" in metrics else None)


def test_the_model_index_carries_held_out_psnr_codes_used_and_bits_per_code(tmp_path):
    image_results = model_index_to_eval_results(front_matter(saved_with_card("vqvae", tmp_path / "v"))["model-index"])[1]
    by_type = {result.metric_type: result for result in image_results}
    assert by_type["psnr"].metric_value == 27.4 and by_type["psnr"].metric_name == "held-out psnr"
    assert by_type["codes_used"].metric_value == 497
    prior_results = model_index_to_eval_results(front_matter(saved_with_card("prior", tmp_path / "p"))["model-index"])[1]
    assert [(result.metric_type, result.metric_value) for result in prior_results] == [("bits_per_code", 4.03)]


@pytest.mark.parametrize("dataset_name, expected_type", [
    ("images (local folder)", "images-local-folder"),
    ("scikit-image photographs", "scikit-image-photographs"),
])
def test_local_data_never_reaches_the_metadata_as_a_path(dataset_name, expected_type, tmp_path):
    card = saved_with_card("vqvae", tmp_path / "vqvae", dataset_name=dataset_name)
    metadata = front_matter(card)
    assert "datasets" not in metadata
    assert {result.dataset_type for result in model_index_to_eval_results(metadata["model-index"])[1]} == {expected_type}
    assert f"Trained on `{dataset_name}`" in str(card)
    assert dataset_type(str(tmp_path / "frames")) == "frames"  # an existing local folder: its name, not its path


def test_a_card_without_figures_has_no_model_index(tmp_path):
    model = tiny_vqvae()
    metadata = front_matter(model.model_card("org/name"))
    assert "model-index" not in metadata and "model_name" not in metadata
    assert ModelCardData(**metadata).to_dict() == metadata


@pytest.mark.parametrize("name", CARDS)
def test_every_card_says_how_to_install_the_package_from_its_repository(name, tmp_path):
    card = str(saved_with_card(name, tmp_path / name))
    assert INSTALL_COMMAND in card and "git+https://github.com/" in INSTALL_COMMAND
    assert "pip install hf-vqvae`" not in card and "pip install hf-vqvae;" not in card

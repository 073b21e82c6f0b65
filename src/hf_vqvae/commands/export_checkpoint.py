"""Turning a training checkpoint into a loadable model (`export_checkpoint`, behind scripts/export_checkpoint.py): what
a run stopped by Ctrl-C, or one whose later updates went wrong, leaves usable by the next steps.

A checkpoint (`training.checkpoints`) holds the model's weights, the fields of its config and the run's settings. The
export rebuilds the model from them and writes what a finished run of its recipe writes for the next steps:

- every model: `config.json` and `model.safetensors` (`from_pretrained` loads them);
- a VQ-VAE: its image processor, so `scripts/extract_codes.py` and `scripts/train_prior.py --vqvae` take the folder;
- an audio VQ-VAE: its feature extractor, so `scripts/extract_speech_codes.py` takes it;
- a prior (PixelCNN or transformer; image, speech or stage-2 codes) or a video prior: also the pipeline, in
  `pipeline/`, over the VQ-VAE the run trained on (named by its `--vqvae` or its codes' `codes_info.json`), so
  `scripts/sample.py`, `scripts/generate_speech.py` and the pipelines' `from_pretrained` take it.

Not written: the validation figures, `metrics.json`, the model card, and a hierarchy's stage-2 codes (`latent_codes`),
which a finished run computes; resume the run to get them.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch

from ..data.codes import CodesInfo
from ..models.audio_vqvae.feature_extraction_audio_vqvae import AudioVQVAEFeatureExtractor
from ..models.audio_vqvae.modeling_audio_vqvae import AudioVQVAEModel
from ..models.auto import MODELS, load_vqvae
from ..models.video_prior.modeling_video_prior import VideoPriorModel
from ..models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ..models.vqvae.modeling_vqvae import VQVAEModel
from ..pipelines.pipeline_utils import Prior
from ..pipelines.pipeline_video_prediction import VideoPredictionPipeline
from ..training.accelerator import lock_output_dir, unlock_output_dirs
from ..training.arguments import parse_arguments
from ..training.checkpoints import ARGUMENTS_FILE, CheckpointManager, model_fields, verify_checkpoint
from ..training.guards import check_finite_weights
from ..training.publishing import write_atomically
from ..training.training_codes import generator_pipeline, load_codes_decoder


logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"  # the first (only) model of `Accelerator.save_state`
# The prefix a multi-process run's wrapper (DistributedDataParallel) puts before every weight's name.
WRAPPER_PREFIX = "module."


@dataclass
class ExportArguments:
    """Which checkpoint, and where its model goes."""

    _argument_group_name = "export"

    checkpoint: str | None = field(
        default=None, metadata={"required": True, "help": "A checkpoint folder, e.g. outputs/vqvae/checkpoint-500."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where the model goes; by default the run's own folder (the checkpoint's parent), as if the "
                          "run had ended at the checkpoint (a resumed run overwrites it when it ends)."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Hub cache folder, for a VQ-VAE named by a Hub id."})


@dataclass
class ExportCheckpointArguments:
    export: ExportArguments = field(default_factory=ExportArguments)


def parse_args(argv: list[str] | None = None) -> ExportCheckpointArguments:
    """The settings of `scripts/export_checkpoint.py`."""
    return parse_arguments(
        ExportCheckpointArguments, argv,
        description="Turn a training checkpoint into a model folder that from_pretrained, the extraction scripts, the "
        "training scripts and the pipelines load.",
    )


def model_class_of(state: dict) -> tuple[type, type]:
    """The (config class, model class) of the model a checkpoint's training state describes: by its config's
    `model_type`, or (a checkpoint of 0.2, which stored the config's fields alone) by those fields."""
    for config_class, model_class in MODELS:
        if "config" in state:
            if state["config"].get("model_type") == config_class.model_type:
                return config_class, model_class
        elif set(model_fields(config_class())) == set(state["model_config"]):
            return config_class, model_class
    raise ValueError(
        f"the checkpoint's model config ({state.get('config', {}).get('model_type') or sorted(state['model_config'])}) "
        f"matches no model of this version of hf-vqvae ({', '.join(model_class.__name__ for _, model_class in MODELS)})"
    )


def load_checkpoint_model(checkpoint: Path):
    """The model a checkpoint holds, in eval mode: its config from `training_state.json`, its weights from
    `model.safetensors`."""
    state = json.loads((checkpoint / CheckpointManager.state_file).read_text())
    config_class, model_class = model_class_of(state)
    if "config" in state:
        config = config_class.from_dict(state["config"])
    else:
        config = config_class(**state["model_config"])
        logger.warning("%s predates checkpoints that store the whole config: class names are lost, ids remain", checkpoint)
    model = model_class(config)
    weights = safetensors.torch.load_file(checkpoint / WEIGHTS_FILE)
    weights = {name.removeprefix(WRAPPER_PREFIX): tensor for name, tensor in weights.items()}
    model.load_state_dict(weights, strict=True)
    return model.eval()


def checkpoint_folder(name: str) -> Path:
    """The complete, readable checkpoint `--checkpoint` names."""
    path = Path(name)
    if not path.is_dir():
        raise ValueError(f"--checkpoint {name!r} is not a folder; pass a checkpoint-<step> folder of a run's --output_dir")
    if not (path / CheckpointManager.state_file).is_file() or not (path / WEIGHTS_FILE).is_file():
        complete = [checkpoint.name for checkpoint in CheckpointManager(path).checkpoints()]
        hint = f" (checkpoints in it: {', '.join(complete)})" if complete else ""
        raise ValueError(
            f"--checkpoint {name!r} is not a complete checkpoint: it lacks {CheckpointManager.state_file} or "
            f"{WEIGHTS_FILE}{hint}"
        )
    verify_checkpoint(path)
    return path


def decoder_of(run_arguments: dict, cache_dir: str | None):
    """(VQ-VAE, processor, stage-2 model or None) a prior's run trained over: its --vqvae, or the one its
    --codes_dataset names."""
    codes = run_arguments.get("codes", {})
    if codes.get("codes_dataset"):
        info = CodesInfo.load(codes["codes_dataset"], cache_dir=cache_dir)
        return load_codes_decoder(codes["codes_dataset"], codes.get("vqvae"), info, cache_dir=cache_dir)
    if codes.get("vqvae"):
        return (*load_vqvae(codes["vqvae"], cache_dir=cache_dir), None)
    raise ValueError("the checkpoint's training_arguments.json names neither --codes_dataset nor --vqvae")


def export_checkpoint(arguments: ExportCheckpointArguments) -> Path:
    """Write the model of `--checkpoint` (and its processor or pipeline, as the module says) into `--output_dir`;
    returns the folder."""
    options = arguments.export
    checkpoint = checkpoint_folder(options.checkpoint)
    output_dir = Path(options.output_dir) if options.output_dir else checkpoint.parent
    model = load_checkpoint_model(checkpoint)
    check_finite_weights(model, f"the model of {str(checkpoint)!r}")
    arguments_path = checkpoint / ARGUMENTS_FILE
    run_arguments = json.loads(arguments_path.read_text()) if arguments_path.is_file() else {}
    pipeline = None
    if isinstance(model, Prior):
        pipeline = generator_pipeline(model, *decoder_of(run_arguments, options.cache_dir))
    elif isinstance(model, VideoPriorModel):
        vqvae, processor, _ = decoder_of(run_arguments, options.cache_dir)
        pipeline = VideoPredictionPipeline(vqvae=vqvae, video_prior=model, image_processor=processor)

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        if isinstance(model, VQVAEModel):
            VQVAEImageProcessor.for_vqvae(model.config).save_pretrained(folder)
        elif isinstance(model, AudioVQVAEModel):
            segment_length = run_arguments.get("data", {}).get("segment_length")
            extras = {"segment_length": segment_length} if segment_length else {}
            AudioVQVAEFeatureExtractor.for_model(model.config, **extras).save_pretrained(folder)
        if pipeline is not None:
            pipeline.save_pretrained(folder / "pipeline")

    lock_output_dir(output_dir)
    try:
        write_atomically(output_dir, save)
    finally:
        unlock_output_dirs()
    step = json.loads((checkpoint / CheckpointManager.state_file).read_text())["position"]["step"]
    written = f"{type(model).__name__} at update {step}" + (f", with its {type(pipeline).__name__} in pipeline/" if pipeline else "")
    print(f"wrote the {written} to {output_dir}", flush=True)
    return output_dir

"""What the demo's video tab computes with a `VideoPredictionPipeline`: from a trajectory's first frames and the
actions picked, the predicted frames as an animated GIF (the observed frames, then the predicted ones) and a strip
with a row each for the observed, the recorded next and the predicted frames.

A trajectory is a row of a data set with `frames` and `actions` (as `data.trajectories` describes them): a Hub data set
or a `save_to_disk` folder (`scripts/make_world_data.py --kind trajectories`), or, without one, a few rendered here
with ViZDoom (the `worlds` extra); or frames the user uploads (an animated GIF, or images in name order)."""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import PIL.Image
import PIL.ImageSequence
import torch
from datasets import Dataset

from ...data.splits import load_named_dataset
from ...data.trajectories import ACTIONS_COLUMN, FRAMES_COLUMN, check_trajectory_columns
from ...pipelines.pipeline_video_prediction import prediction_strip, save_gif
from .image import MIN_SHOWN_SIDE, enlarged


# Trajectories rendered when no data set is given: a few episodes, each long enough for the context and as many
# predictions as the tab proposes.
RENDERED_EPISODES = 4
PROPOSED_PREDICTIONS = 8

# Each predicted frame samples a whole code grid position by position: the tab predicts at most this many at once.
MAX_PREDICTED_FRAMES = 16


@dataclass
class Prediction:
    """The frames predicted from a trajectory: `gif` (the path of the observed then the predicted frames, animated),
    `strip` (a row each: observed, recorded next when known, predicted) and `frames` (the predicted frames)."""

    gif: str
    strip: PIL.Image.Image
    frames: list[PIL.Image.Image]


def load_trajectories(pipeline, name: str | None = None, max_trajectories: int = 16) -> Dataset:
    """Up to `max_trajectories` trajectories of the data set `name` (its validation or test split when it has one),
    else a few rendered with ViZDoom at the pipeline's frame size."""
    if max_trajectories < 1:
        raise ValueError(f"max_trajectories must be >= 1, got {max_trajectories}")
    if name is None:
        from ...data.worlds import render_trajectories

        steps = pipeline.video_prior.config.context_frames + PROPOSED_PREDICTIONS
        try:
            trajectories = render_trajectories(RENDERED_EPISODES, steps, resolution=pipeline.vqvae.config.sample_size)
        except ImportError as error:
            raise ImportError(f"the video tab needs trajectories: pass --trajectories with a data set, or {error}") from error
        name = "the trajectories rendered with ViZDoom"
    else:
        splits = load_named_dataset(name)
        split = next((split for split in ("validation", "test", "train") if split in splits), next(iter(splits)))
        trajectories = splits[split]
        check_trajectory_columns(trajectories, FRAMES_COLUMN, ACTIONS_COLUMN)
        trajectories = trajectories.select(range(min(max_trajectories, len(trajectories))))
    check_actions_fit(pipeline, trajectories, name)
    return trajectories


def check_actions_fit(pipeline, trajectories: Dataset, name: str) -> None:
    """Raise a `ValueError` unless the trajectories' actions are the video prior's: names alike where both name them,
    ids within its action space."""
    names = action_names(pipeline)
    data_names = getattr(trajectories.features[ACTIONS_COLUMN].feature, "names", None)
    if data_names and pipeline.video_prior.config.action_names and list(data_names) != names:
        raise ValueError(f"the actions of {name} are {list(data_names)} but the video prior's are {names}")
    largest = max((max(actions) for actions in trajectories[ACTIONS_COLUMN] if actions), default=-1)
    if largest >= len(names):
        raise ValueError(
            f"{name} take action id {largest} but the video prior knows {len(names)} actions (ids 0-{len(names) - 1})"
        )


def action_names(pipeline) -> list[str]:
    """The actions of the pipeline's video prior, by name where its config names them, else by id."""
    config = pipeline.video_prior.config
    return [str(name) for name in (config.action_names or range(config.num_actions))]


def recorded_actions(pipeline, trajectory: dict) -> str:
    """The actions the trajectory took from its last observed frame on (those that lead to its recorded next frames),
    as names separated by commas, at most `PROPOSED_PREDICTIONS` of them."""
    names = action_names(pipeline)
    context = pipeline.video_prior.config.context_frames
    taken = trajectory[ACTIONS_COLUMN][context - 1 : -1][:PROPOSED_PREDICTIONS]
    return ", ".join(names[action] for action in taken)


def parse_actions(pipeline, text: str | None) -> list[int]:
    """Action names or ids separated by commas or spaces, as ids; an error naming the unknown ones."""
    names = action_names(pipeline)
    words = [word for word in re.split(r"[,\s]+", text or "") if word]
    if not words:
        raise ValueError(f"give at least one action, for example {names[0]}; the actions are {names}")
    if len(words) > MAX_PREDICTED_FRAMES:
        raise ValueError(f"the tab predicts at most {MAX_PREDICTED_FRAMES} frames at once, got {len(words)} actions")
    ids = [names.index(word) if word in names else int(word) if word.isdigit() else -1 for word in words]
    unknown = [word for word, action in zip(words, ids) if not 0 <= action < len(names)]
    if unknown:
        raise ValueError(f"unknown action(s) {unknown}; the actions are {names} (or their ids 0-{len(names) - 1})")
    return ids


def uploaded_frames(paths: list[str] | None) -> list[PIL.Image.Image]:
    """Frames the user uploaded: the frames of an animated GIF, or several images, in the order of their file names."""
    if not paths:
        raise ValueError("upload frames: an animated GIF, or images in the order of their file names")
    images = [PIL.Image.open(path) for path in sorted(paths, key=lambda path: Path(path).name)]
    if len(images) == 1:
        return [frame.convert("RGB") for frame in PIL.ImageSequence.Iterator(images[0])]
    return [image.convert("RGB") for image in images]


def trajectory_frames(trajectories: Dataset | None, index: int, uploads: list[str] | None) -> list[PIL.Image.Image]:
    """The frames of the uploaded trajectory when there is one, else of trajectory `index` of `trajectories`."""
    if uploads:
        return uploaded_frames(uploads)
    if trajectories is None or not len(trajectories):
        raise ValueError("there are no trajectories to pick from: upload frames")
    if not 0 <= int(index) < len(trajectories):
        raise ValueError(f"pick a trajectory in [0, {len(trajectories) - 1}], got {index}")
    return list(trajectories[int(index)][FRAMES_COLUMN])


def predict(
    pipeline, frames: list[PIL.Image.Image], actions: str, seed: int, temperature: float, folder: Path
) -> Prediction:
    """The frames predicted after the first `context_frames` of `frames` (resized to the VQ-VAE's size) under
    `actions` (see `parse_actions`), from `seed` at `temperature`; the GIF is written into `folder`. The frames after
    the context, if any, are the recorded ones the strip shows beside the prediction."""
    size = pipeline.vqvae.config.sample_size
    frames = [frame.convert("RGB").resize((size, size), PIL.Image.BICUBIC) for frame in frames]
    context_frames = pipeline.video_prior.config.context_frames
    if len(frames) < context_frames:
        raise ValueError(f"the trajectory has {len(frames)} frames; the video prior observes {context_frames}")
    context, recorded = frames[:context_frames], frames[context_frames:]
    action_ids = parse_actions(pipeline, actions)
    generator = torch.Generator(device=pipeline.device).manual_seed(int(seed))
    predicted = pipeline(frames=context, actions=action_ids, temperature=float(temperature), generator=generator).frames[0]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix="prediction-", suffix=".gif", delete=False) as file:
        gif = save_gif([enlarged(frame) for frame in context + predicted], file.name)
    strip = prediction_strip(context, recorded[: len(predicted)] or None, predicted)
    return Prediction(gif=gif, strip=enlarged(strip, min_side=MIN_SHOWN_SIDE // 2), frames=predicted)

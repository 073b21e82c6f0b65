"""What a run sends to its trackers (TensorBoard by default, `--report_to`): the hyper-parameters, and the images and
audio of a validation. Scalars go through `Accelerator.log` directly."""

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator


def init_trackers(accelerator: Accelerator, project_name: str, hyperparameters: dict, first_step: int = 1) -> None:
    """Start the trackers; TensorBoard discards events a previous run logged from `first_step` on (the
    steps a resumed run replays)."""
    # Trackers store hyper-parameters as scalars and strings only.
    config = {name: " ".join(map(str, value)) if isinstance(value, list) else value for name, value in hyperparameters.items()}
    config = {name: value for name, value in config.items() if isinstance(value, (bool, int, float, str))}
    accelerator.init_trackers(project_name, config=config, init_kwargs={"tensorboard": {"purge_step": first_step}})


def log_image(accelerator: Accelerator, name: str, image: PIL.Image.Image, step: int) -> None:
    """Send one image to every tracker that takes images (main process only)."""
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({name: np.asarray(image.convert("RGB"))[None]}, step=step, dataformats="NHWC")
        elif hasattr(tracker, "log_images"):
            tracker.log_images({name: [image]}, step=step)


def log_audio(accelerator: Accelerator, name: str, waveform: torch.Tensor, sampling_rate: int, step: int) -> None:
    """Send one mono waveform (floats in [-1, 1]) to the TensorBoard tracker, the one that plays audio (main
    process only)."""
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_audio(name, waveform.detach().float().cpu().reshape(1, -1), step, sample_rate=sampling_rate)

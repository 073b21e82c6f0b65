import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image, List, Value

from hf_vqvae import VQVAEConfig, VQVAEImageProcessor, VQVAEModel
from hf_vqvae.data.images import ImageTransform
from hf_vqvae.data.trajectories import (
    TrajectoryWindows,
    action_space,
    check_action_ids,
    check_trajectory_lengths,
    encode_trajectories,
)
from hf_vqvae.training.accelerator import create_accelerator

from conftest import TINY_VQVAE
from synthetic_trajectories import ACTIONS, synthetic_trajectories


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def trajectories():
    return synthetic_trajectories(num_episodes=3, steps_per_episode=5)


def encode(trajectories, vqvae=None, batch_size=4):
    vqvae = vqvae or VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()
    transform = ImageTransform(VQVAEImageProcessor.for_vqvae(vqvae.config))
    return vqvae, encode_trajectories(vqvae, trajectories, transform, create_accelerator(), batch_size=batch_size)


def test_each_trajectory_becomes_its_frames_codes_with_its_actions(trajectories):
    vqvae, codes = encode(trajectories, batch_size=4)  # batches straddle trajectories
    assert codes.column_names == ["codes", "actions"] and len(codes) == 3
    assert codes.features["actions"] == trajectories.features["actions"]
    for row, trajectory in zip(codes, trajectories):
        pixel_values = VQVAEImageProcessor.for_vqvae(vqvae.config)(
            trajectory["frames"], return_tensors="pt"
        )["pixel_values"]
        assert torch.equal(torch.tensor(row["codes"]), vqvae.encode(pixel_values).indices)
        assert row["actions"] == trajectory["actions"]
    assert action_space(codes, "actions") == (3, list(ACTIONS))


def test_windows_hold_the_context_the_next_frame_and_the_action_leading_to_it(trajectories):
    _, codes = encode(trajectories)
    windows = TrajectoryWindows(codes, context_frames=2)
    assert len(windows) == 3 * (5 - 2)
    example = windows[4]  # trajectory 1, frames 1..3
    assert torch.equal(example["input_ids"], torch.tensor(codes[1]["codes"][1:4]))
    assert example["actions"].tolist() == [codes[1]["actions"][2]]


def test_bad_trajectories_name_the_problem(trajectories):
    with pytest.raises(ValueError, match=r"the frames are 16x16 pixels but the VQ-VAE encodes 32x32 frames"):
        encode(trajectories, VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, "sample_size": 32})))
    uneven = trajectories.map(lambda row: {"actions": row["actions"][:-1]})
    with pytest.raises(ValueError, match=r"trajectory 0 has 5 frames but 4 actions"):
        encode(uneven)
    with pytest.raises(ValueError, match=r"the trajectories have no 'actions' column; their columns are \['frames'\]"):
        encode(trajectories.remove_columns("actions"))
    floats = Dataset.from_dict(
        {"frames": trajectories["frames"], "actions": [[0.5] * 5] * 3},
        features=Features({"frames": List(Image()), "actions": List(Value("float32"))}),
    )
    with pytest.raises(ValueError, match=r"the 'actions' column must hold sequences of action ids"):
        encode(floats)
    _, codes = encode(trajectories)
    with pytest.raises(ValueError, match=r"3 trajectories of the training split are shorter than 6 frames \(context_frames \+ 1\)"):
        check_trajectory_lengths(codes, "codes", 6, "the training split")
    with pytest.raises(ValueError, match=r"the actions of the training split lie in \[0, 2\], outside the action space \[0, 2\)"):
        check_action_ids(codes, "actions", 2, "the training split")
    assert np.asarray(codes[0]["codes"]).shape == (5, 4, 4)

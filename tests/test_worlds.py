"""The ViZDoom frames and trajectories: shapes, features, the policy's coverage, seeding, the script."""

import sys

import numpy as np
import pytest
from datasets import ClassLabel, load_from_disk

from hf_vqvae.commands.make_world_data import WorldDataArguments, make_world_data
from hf_vqvae.data.worlds import WORLD_ACTIONS, render_frames, render_trajectories


pytest.importorskip("vizdoom")


def test_trajectories_have_frames_and_the_actions_after_them():
    trajectories = render_trajectories(num_episodes=3, steps_per_episode=40, resolution=32, seed=1)
    assert trajectories.features["actions"].feature == ClassLabel(names=list(WORLD_ACTIONS))
    assert len(trajectories) == 3
    for episode in trajectories:
        assert len(episode["frames"]) == len(episode["actions"]) == 40
        assert {frame.size for frame in episode["frames"]} == {(32, 32)}
        assert {frame.mode for frame in episode["frames"]} == {"RGB"}
        pixels = np.stack([np.asarray(frame, dtype=np.float32) for frame in episode["frames"]])
        # The player moves: consecutive frames differ, and the episode is not one view.
        assert np.abs(np.diff(pixels, axis=0)).mean() > 1.0
    actions = {action for episode in trajectories["actions"] for action in episode}
    assert actions == set(range(len(WORLD_ACTIONS))), "the policy covers standing, moving, turning and strafing"


def test_same_arguments_give_the_same_bytes_and_another_seed_other_frames():
    first = render_frames(num_frames=12, resolution=24, seed=3, steps_per_episode=6, frame_stride=1)
    again = render_frames(num_frames=12, resolution=24, seed=3, steps_per_episode=6, frame_stride=1)
    other = render_frames(num_frames=12, resolution=24, seed=4, steps_per_episode=6, frame_stride=1)
    assert first.data.table.equals(again.data.table)
    assert first["episode"] == [0] * 6 + [1] * 6 and first["step"] == list(range(6)) * 2
    assert not first.data.table.column("image").equals(other.data.table.column("image"))
    trajectories = [render_trajectories(2, 5, resolution=16, seed=7).data.table for _ in range(2)]
    assert trajectories[0].equals(trajectories[1])


def test_script_writes_splits_by_episode_and_pushes(tmp_path, recorded_dataset_uploads, capsys):
    arguments = WorldDataArguments(
        kind="frames", output_dir=str(tmp_path / "frames"), num_frames=20, steps_per_episode=8, frame_stride=2,
        resolution=16, validation_fraction=0.2, push_to_hub=True, hub_dataset_id="org/frames", hub_token="hf_test",
    )
    written = make_world_data(arguments)
    output = capsys.readouterr()
    assert "rendering my_way_home episodes of 8 steps" in output.err and "5/5" in output.err  # a progress bar
    assert output.out.endswith(f"wrote the my_way_home frames to {tmp_path / 'frames'}: train 16 rows, validation 4 rows\n")
    loaded = load_from_disk(str(tmp_path / "frames"))
    assert {name: len(split) for name, split in loaded.items()} == {"train": 16, "validation": 4}
    assert set(loaded["train"]["episode"]).isdisjoint(loaded["validation"]["episode"])
    assert loaded["train"][0]["image"].size == (16, 16)
    assert loaded["train"].data.table.equals(written["train"].data.table)
    assert recorded_dataset_uploads["created"] == ["org/frames"]
    files = recorded_dataset_uploads["commits"][0]["files"]
    assert {"data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet"} <= set(files)


def test_bad_inputs_name_the_problem(monkeypatch):
    with pytest.raises(ValueError, match=r"steps_per_episode must be an integer >= 1, got 0"):
        render_trajectories(2, 0)
    with pytest.raises(ValueError, match=r"resolution must be an integer >= 8, got 4"):
        render_frames(3, resolution=4)
    with pytest.raises(ValueError, match=r"scenario 'nowhere' is neither .* the shipped ones are \[.*'my_way_home'"):
        render_frames(3, scenario="nowhere")
    with pytest.raises(ValueError, match=r"--kind must be 'frames' or 'trajectories', got 'video'"):
        WorldDataArguments(kind="video")
    monkeypatch.setitem(sys.modules, "vizdoom", None)
    with pytest.raises(ImportError, match=r'pip install "hf-vqvae\[worlds\]"'):
        render_frames(3)
    with pytest.raises(ImportError, match=r'pip install "hf-vqvae\[worlds\]"'):
        make_world_data(WorldDataArguments(output_dir="unused"))

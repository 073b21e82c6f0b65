"""Small trajectories with the schema of `data.worlds.render_trajectories`, made without a game engine: a camera
looks at a window of a random panorama that wraps around, and the actions move it (stay, turn left, turn right) by
a few pixels, so the next frame follows from the last one and the action."""

import numpy as np
import PIL.Image
from datasets import ClassLabel, Dataset, Features, Image, List


ACTIONS = ("stay", "turn_left", "turn_right")
STEP_PIXELS = 4


def panorama(size: int, seed: int) -> np.ndarray:
    """A (size, 4 * size, 3) uint8 panorama of coloured vertical bars and noise."""
    rng = np.random.default_rng(seed)
    columns = np.repeat(rng.integers(0, 256, (4 * size // 4, 3)), 4, axis=0)[: 4 * size]
    shade = np.linspace(0.5, 1.0, size)[:, None, None]
    image = columns[None] * shade + rng.normal(0, 6, (size, 4 * size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_trajectories(num_episodes: int, steps_per_episode: int, resolution: int = 16, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    episodes = {"frames": [], "actions": []}
    for episode in range(num_episodes):
        world = panorama(resolution, seed * 1000 + episode)
        position = int(rng.integers(0, world.shape[1]))
        frames, actions = [], []
        for _ in range(steps_per_episode):
            columns = (position + np.arange(resolution)) % world.shape[1]
            frames.append(PIL.Image.fromarray(world[:, columns]))
            action = int(rng.integers(0, len(ACTIONS)))
            actions.append(action)
            position += (0, -STEP_PIXELS, STEP_PIXELS)[action]
        episodes["frames"].append(frames)
        episodes["actions"].append(actions)
    features = Features({"frames": List(Image()), "actions": List(ClassLabel(names=list(ACTIONS)))})
    return Dataset.from_dict(episodes, features=features)

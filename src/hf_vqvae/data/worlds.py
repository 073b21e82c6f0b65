"""First-person 3-D frames and trajectories rendered offline from ViZDoom, the stand-in for the
paper's DeepMind Lab data (84x84 frames of a first-person maze, and the actions taken).

The `vizdoom` wheel ships its game data (Freedoom WADs and scenarios) and renders headless, so
`render_frames` and `render_trajectories` make real data sets with no network. An exploring policy
drives the player: it picks an action (standing still, moving forward or back, turning, strafing)
and keeps it for a few steps, so the episodes show both smooth motion and changes of direction, and
it turns away when a move leaves the player where it was (a wall), so it keeps moving through the
map. Every random choice (the game's and the policy's) comes from `seed`: the same arguments give
the same frames, byte for byte.
"""

import dataclasses
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np
import PIL.Image
from datasets import ClassLabel, Dataset, Features, Image, List, Value
from tqdm.auto import tqdm


logger = logging.getLogger(__name__)

WORLDS_EXTRA_HINT = 'install it with `pip install "hf-vqvae[worlds]"`'

# The action ids of the trajectories (index = id); the policy and the `ClassLabel` use this order.
WORLD_ACTIONS = ("noop", "forward", "backward", "turn_left", "turn_right", "strafe_left", "strafe_right")

# How often the policy picks each action: mostly forward so that episodes travel through the map.
ACTION_PROBABILITIES = (0.1, 0.35, 0.1, 0.15, 0.15, 0.075, 0.075)
# A chosen action is kept for 1 to this many steps.
MAX_ACTION_RUN = 6
# Game tics per step: DeepMind Lab's agents act every 4 frames too.
TICS_PER_STEP = 4
# A move that shifts the player by less than this (map units) ran into a wall.
STUCK_DISTANCE = 1.0

# A maze of rooms with varied textures and no monsters, the closest of the shipped scenarios to
# DeepMind Lab's mazes.
DEFAULT_SCENARIO = "my_way_home"

# Episodes that end before their last step (the player reached the scenario's goal) are replaced;
# this bounds the replacements per requested episode.
MAX_EPISODE_ATTEMPTS = 20

# Scenario frames are 4:3; the centre square is kept so that nothing is squashed.
SCREEN_RESOLUTIONS = ((120, "RES_160X120"), (240, "RES_320X240"), (480, "RES_640X480"))

_MOVES = {
    "forward": "MOVE_FORWARD",
    "backward": "MOVE_BACKWARD",
    "turn_left": "TURN_LEFT",
    "turn_right": "TURN_RIGHT",
    "strafe_left": "MOVE_LEFT",
    "strafe_right": "MOVE_RIGHT",
}
_TRANSLATIONS = {WORLD_ACTIONS.index(name) for name in ("forward", "backward", "strafe_left", "strafe_right")}
_TURNS = (WORLD_ACTIONS.index("turn_left"), WORLD_ACTIONS.index("turn_right"))


def import_vizdoom():
    """The `vizdoom` module, or an `ImportError` that names the extra to install."""
    try:
        import vizdoom
    except ImportError as error:
        raise ImportError(f"rendering 3-D worlds needs the `vizdoom` package; {WORLDS_EXTRA_HINT}") from error
    return vizdoom


def available_scenarios() -> list[str]:
    """The scenario names shipped with the installed vizdoom (configuration files without `.cfg`)."""
    vizdoom = import_vizdoom()
    return sorted(name[: -len(".cfg")] for name in os.listdir(vizdoom.scenarios_path) if name.endswith(".cfg"))


def _check_positive(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _scenario_config(scenario: str) -> str:
    """The path of a shipped scenario's configuration, or of a `.cfg` file given by path."""
    if scenario.endswith(".cfg") and os.path.isfile(scenario):
        return scenario
    vizdoom = import_vizdoom()
    path = os.path.join(vizdoom.scenarios_path, f"{scenario}.cfg")
    if not os.path.isfile(path):
        raise ValueError(
            f"scenario {scenario!r} is neither a .cfg file nor a shipped vizdoom scenario; "
            f"the shipped ones are {available_scenarios()}"
        )
    return path


@dataclasses.dataclass
class _Step:
    frame: PIL.Image.Image
    action: int


class _World:
    """A headless ViZDoom game with the buttons of `WORLD_ACTIONS` and square frames of `resolution`."""

    def __init__(self, scenario: str, resolution: int, seed: int):
        vizdoom = import_vizdoom()
        self.resolution = resolution
        screen = next((name for height, name in SCREEN_RESOLUTIONS if height >= resolution), SCREEN_RESOLUTIONS[-1][1])
        game = vizdoom.DoomGame()
        game.load_config(_scenario_config(scenario))
        # ZDoom writes its settings file and an empty `_vizdoom` folder; keep them out of the user's working directory.
        self.created_work_folder = not os.path.exists("_vizdoom")
        self.settings_folder = tempfile.mkdtemp(prefix="hf-vqvae-vizdoom-")
        game.set_doom_config_path(os.path.join(self.settings_folder, "_vizdoom.ini"))
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        # Sound off still opens the system's OpenAL where one is installed, and libopenal 1.19 aborts the process on
        # some maps (freedoom2); no sound backend at all renders the same frames.
        game.add_game_args("+snd_backend null")
        game.set_mode(vizdoom.Mode.PLAYER)
        game.set_screen_resolution(getattr(vizdoom.ScreenResolution, screen))
        game.set_screen_format(vizdoom.ScreenFormat.RGB24)
        game.set_render_hud(False)
        game.set_render_crosshair(False)
        game.set_render_messages(False)
        game.set_available_buttons([getattr(vizdoom.Button, _MOVES[name]) for name in WORLD_ACTIONS[1:]])
        game.set_available_game_variables([vizdoom.GameVariable.POSITION_X, vizdoom.GameVariable.POSITION_Y])
        game.set_seed(seed)
        game.init()
        self.game = game

    def close(self) -> None:
        self.game.close()
        shutil.rmtree(self.settings_folder, ignore_errors=True)
        if self.created_work_folder and os.path.isdir("_vizdoom") and not os.listdir("_vizdoom"):
            os.rmdir("_vizdoom")

    def frame(self) -> PIL.Image.Image:
        screen = self.game.get_state().screen_buffer  # (height, width, 3) uint8
        height, width, _ = screen.shape
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = PIL.Image.fromarray(np.ascontiguousarray(screen[top : top + side, left : left + side]))
        return square if side == self.resolution else square.resize((self.resolution, self.resolution), PIL.Image.BILINEAR)

    def position(self) -> np.ndarray:
        return np.asarray(self.game.get_state().game_variables, dtype=np.float64)

    def act(self, action: int) -> None:
        buttons = [0] * (len(WORLD_ACTIONS) - 1)
        if action > 0:
            buttons[action - 1] = 1
        self.game.make_action(buttons, TICS_PER_STEP)

    def episode(self, steps: int, policy_rng: np.random.Generator) -> list[_Step] | None:
        """`steps` frames of a new episode and the action taken after each; None when the episode
        ends (goal reached) before its last step."""
        self.game.new_episode()
        steps_taken: list[_Step] = []
        action, run_left = 0, 0
        while len(steps_taken) < steps:
            if run_left == 0:
                action = int(policy_rng.choice(len(WORLD_ACTIONS), p=ACTION_PROBABILITIES))
                run_left = int(policy_rng.integers(1, MAX_ACTION_RUN + 1))
            frame, before = self.frame(), self.position()
            steps_taken.append(_Step(frame, action))
            self.act(action)
            run_left -= 1
            if self.game.is_episode_finished():
                return steps_taken if len(steps_taken) == steps else None
            if action in _TRANSLATIONS and np.linalg.norm(self.position() - before) < STUCK_DISTANCE:
                action, run_left = _TURNS[int(policy_rng.integers(2))], int(policy_rng.integers(2, MAX_ACTION_RUN + 1))
        return steps_taken


def _episodes(num_episodes: int, steps_per_episode: int, resolution: int, seed: int, scenario: str) -> Iterator[list[_Step]]:
    world = _World(scenario, resolution, seed)
    policy_rng = np.random.default_rng(seed)
    try:
        # ViZDoom renders a few hundred frames a second on one core: 20,000 take minutes.
        for index in tqdm(range(num_episodes), desc=f"rendering {scenario} episodes of {steps_per_episode} steps", unit="episode"):
            for _ in range(MAX_EPISODE_ATTEMPTS):
                steps = world.episode(steps_per_episode, policy_rng)
                if steps is not None:
                    break
                logger.info("episode %d ended before step %d; rendering another", index, steps_per_episode)
            else:
                raise RuntimeError(
                    f"{MAX_EPISODE_ATTEMPTS} episodes of {scenario!r} in a row ended before {steps_per_episode} steps; "
                    "ask for fewer --steps_per_episode or another scenario"
                )
            yield steps
    finally:
        world.close()


def _png(frame: PIL.Image.Image) -> dict:
    """Encode a frame as PNG ourselves, so the stored bytes never depend on an encoder's defaults."""
    buffer = io.BytesIO()
    frame.save(buffer, format="PNG", optimize=False, compress_level=6)
    return {"bytes": buffer.getvalue(), "path": None}


def _check_arguments(resolution: int, seed: int, scenario: str) -> None:
    _check_positive("resolution", resolution, minimum=8)
    _check_positive("seed", seed, minimum=0)
    if not isinstance(scenario, str):
        raise ValueError(f"scenario must be a scenario name or a .cfg path, got {scenario!r}")


def render_trajectories(
    num_episodes: int, steps_per_episode: int, resolution: int = 64, seed: int = 0, scenario: str = DEFAULT_SCENARIO
) -> Dataset:
    """Episodes of the exploring policy: `frames` (a sequence of `steps_per_episode` RGB images of
    `resolution` x `resolution`) and `actions` (the action id taken after each frame, a
    `ClassLabel` of `WORLD_ACTIONS`)."""
    _check_positive("num_episodes", num_episodes)
    _check_positive("steps_per_episode", steps_per_episode)
    _check_arguments(resolution, seed, scenario)
    frames, actions = [], []
    for steps in _episodes(num_episodes, steps_per_episode, resolution, seed, scenario):
        frames.append([_png(step.frame) for step in steps])
        actions.append([step.action for step in steps])
    features = Features({"frames": List(Image()), "actions": List(ClassLabel(names=list(WORLD_ACTIONS)))})
    return Dataset.from_dict({"frames": frames, "actions": actions}, features=features)


def render_frames(
    num_frames: int,
    resolution: int = 84,
    seed: int = 0,
    scenario: str = DEFAULT_SCENARIO,
    steps_per_episode: int = 100,
    frame_stride: int = 2,
) -> Dataset:
    """`num_frames` frames of the exploring policy's episodes, every `frame_stride`-th step of
    episodes of `steps_per_episode` steps: an `image` column (RGB, `resolution` x `resolution`) and
    the `episode`, `step` and `action` (taken after the frame) it comes from, so a user can split
    the frames by episode."""
    _check_positive("num_frames", num_frames)
    _check_positive("steps_per_episode", steps_per_episode)
    _check_positive("frame_stride", frame_stride)
    if frame_stride > steps_per_episode:
        raise ValueError(f"frame_stride ({frame_stride}) must not exceed steps_per_episode ({steps_per_episode})")
    _check_arguments(resolution, seed, scenario)
    frames_per_episode = -(-steps_per_episode // frame_stride)
    num_episodes = -(-num_frames // frames_per_episode)
    rows = {"image": [], "episode": [], "step": [], "action": []}
    for episode, steps in enumerate(_episodes(num_episodes, steps_per_episode, resolution, seed, scenario)):
        for step in range(0, steps_per_episode, frame_stride):
            if len(rows["image"]) == num_frames:
                break
            rows["image"].append(_png(steps[step].frame))
            rows["episode"].append(episode)
            rows["step"].append(step)
            rows["action"].append(steps[step].action)
    features = Features({
        "image": Image(), "episode": Value("int32"), "step": Value("int32"),
        "action": ClassLabel(names=list(WORLD_ACTIONS)),
    })
    return Dataset.from_dict(rows, features=features)

"""The demo's Gradio app and its command line (`scripts/demo.py`): one tab per pipeline, served on this machine only
(no share link, no analytics).

    python scripts/demo.py --pipeline outputs/prior/pipeline
"""

import argparse
import functools
import os
import tempfile
from pathlib import Path


# Read by Gradio when it is imported: nothing of the demo leaves this machine (no analytics, no version check).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

try:
    import gradio as gr  # noqa: E402
except ModuleNotFoundError as error:
    raise ModuleNotFoundError(
        'The demo needs Gradio, which hf-vqvae installs only on request: pip install "hf-vqvae[demo]"'
    ) from error

from ...argument_checks import HelpWithDefaults  # noqa: E402
from . import image, speech, video  # noqa: E402
from .pipelines import load_pipeline, quick_start_pipelines, tab_of, tab_title  # noqa: E402


DEFAULT_SERVER_NAME = "127.0.0.1"
DEFAULT_SERVER_PORT = 7860
MAX_SAMPLES = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpWithDefaults)
    parser.add_argument(
        "--pipeline", nargs="+", default=None,
        help="Pipeline folders or Hub ids, one tab each; None: those of the README's quick start that exist.",
    )
    parser.add_argument(
        "--trajectories", default=None,
        help="Trajectories for the video tabs: a data set (Hub id or save_to_disk folder) with `frames` and `actions`; "
        "None: a few rendered with ViZDoom (the `worlds` extra).",
    )
    parser.add_argument("--device", default=None, help="Device to run the pipelines on; None: cuda when there is a GPU, else cpu.")
    parser.add_argument("--cache_dir", default=None, help="Hub cache folder.")
    parser.add_argument("--server_name", default=DEFAULT_SERVER_NAME, help="Address to serve on (0.0.0.0 for every one).")
    parser.add_argument("--server_port", type=int, default=DEFAULT_SERVER_PORT, help="Port to serve on.")
    args = parser.parse_args(argv)
    if not 0 < args.server_port < 65536:
        parser.error(f"--server_port must be a port number in [1, 65535], got {args.server_port}")
    return args


def as_gradio_error(function):
    """`function` with its ValueErrors shown in the page (a `gr.Error`) instead of a generic "Error"."""

    @functools.wraps(function)
    def shown(*args):
        try:
            return function(*args)
        except ValueError as error:
            raise gr.Error(str(error)) from error

    return shown


def image_tab(pipeline, tab: int) -> None:
    """Upload an image and see it beside its reconstruction, its code map and what its codes cost; draw samples."""
    num_embeddings = pipeline.vqvae.config.num_embeddings

    def reconstruct(picture):
        result = image.reconstruct(pipeline, picture)
        return result.pair, result.code_map, result.summary(num_embeddings)

    with gr.Row():
        upload = gr.Image(type="pil", label="Image", sources=["upload", "clipboard"], elem_id=f"upload-{tab}")
        with gr.Column():
            pair = gr.Image(label="Input as the model sees it | reconstruction", format="png", elem_id=f"reconstruction-{tab}")
            codes = gr.Image(label="Code map (one colour per code)", format="png", elem_id=f"code-map-{tab}")
    summary = gr.Markdown(elem_id=f"summary-{tab}")
    gr.Button("Reconstruct", variant="primary").click(
        as_gradio_error(reconstruct), inputs=upload, outputs=[pair, codes, summary], api_name="reconstruct"
    )
    sample_controls(pipeline, tab, image.class_names(pipeline))


def hierarchy_tab(pipeline, tab: int) -> None:
    """Sample frames through both stages of the hierarchy."""
    sample_controls(pipeline, tab, classes=[])


def sample_controls(pipeline, tab: int, classes: list[str]) -> None:
    with gr.Row():
        class_name = gr.Dropdown(classes, value=classes[0], label="Class") if classes else gr.State(None)
        count = gr.Slider(1, MAX_SAMPLES, value=4, step=1, label="Images")
        seed = gr.Number(value=0, precision=0, label="Seed")
        temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
    samples = gr.Image(label="Samples", format="png", elem_id=f"samples-{tab}")
    gr.Button("Sample", variant="primary").click(
        as_gradio_error(functools.partial(image.sample, pipeline)),
        inputs=[count, seed, temperature, class_name], outputs=samples, api_name="sample",
    )


def speech_tab(pipeline, tab: int) -> None:
    """Record or upload speech, hear it reconstructed in its speaker's voice and in another's; new speech from the
    prior when the pipeline has one."""
    speakers = speech.speaker_names(pipeline)

    def speaker_choice(label: str, index: int):
        return gr.Dropdown(speakers, value=speakers[index % len(speakers)], label=label) if speakers else gr.State(None)

    clip = gr.Audio(sources=["upload", "microphone"], type="numpy", label="Speech", elem_id=f"speech-{tab}")
    with gr.Row():
        source, target = speaker_choice("Speaker of the clip", 0), speaker_choice("Convert to", 1)
        seed = gr.Number(value=0, precision=0, label="Seed")
    with gr.Row():
        reconstruction = gr.Audio(label="Reconstruction", elem_id=f"speech-reconstruction-{tab}")
        conversion = gr.Audio(label="Converted", visible=bool(speakers), elem_id=f"speech-conversion-{tab}")
    gr.Button(f"Reconstruct (first {speech.DEFAULT_MAX_SECONDS:g} s)", variant="primary").click(
        as_gradio_error(functools.partial(speech.reconstruct_and_convert, pipeline)),
        inputs=[clip, source, target, seed], outputs=[reconstruction, conversion], api_name="convert",
    )
    if pipeline.prior is not None:
        with gr.Row():
            speaker = speaker_choice("Speaker", 0)
            generation_seed = gr.Number(value=0, precision=0, label="Seed")
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
        generated = gr.Audio(label="Generated", elem_id=f"speech-generated-{tab}")
        gr.Button("Generate", variant="primary").click(
            as_gradio_error(functools.partial(speech.generate, pipeline)),
            inputs=[speaker, generation_seed, temperature], outputs=generated, api_name="generate",
        )


def video_tab(pipeline, tab: int, trajectories_name: str | None = None) -> None:
    """Pick a trajectory (or upload frames) and actions, see the predicted frames as a GIF and beside the recorded
    ones."""
    trajectories = video.load_trajectories(pipeline, trajectories_name)
    gif_folder = Path(tempfile.mkdtemp(prefix="hf-vqvae-demo-video-"))
    names = video.action_names(pipeline)

    def shown_prediction(index, uploads, actions, seed, temperature):
        frames = video.trajectory_frames(trajectories, index, uploads)
        prediction = video.predict(pipeline, frames, actions, seed, temperature, gif_folder)
        return prediction.gif, prediction.strip

    with gr.Row():
        choices = [(f"{row}: {len(taken)} frames", row) for row, taken in enumerate(trajectories[video.ACTIONS_COLUMN])]
        index = gr.Dropdown(choices, value=0, label="Trajectory", elem_id=f"trajectory-{tab}")
        uploads = gr.File(
            file_count="multiple", file_types=["image"], type="filepath", elem_id=f"frames-{tab}",
            label="Or upload frames (an animated GIF, or images in the order of their names)",
        )
    with gr.Row():
        actions = gr.Textbox(
            value=video.recorded_actions(pipeline, trajectories[0]), elem_id=f"actions-{tab}",
            label=f"Actions, one per predicted frame (the recorded ones to start with; any of {', '.join(names)})",
        )
        seed = gr.Number(value=0, precision=0, label="Seed")
        temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
    index.change(lambda picked: video.recorded_actions(pipeline, trajectories[int(picked)]), inputs=index, outputs=actions)
    with gr.Row():
        animation = gr.Image(type="filepath", label="Observed, then predicted frames", elem_id=f"prediction-gif-{tab}")
        strip = gr.Image(label="Observed | recorded next | predicted", format="png", elem_id=f"prediction-strip-{tab}")
    gr.Button("Predict", variant="primary").click(
        as_gradio_error(shown_prediction), inputs=[index, uploads, actions, seed, temperature],
        outputs=[animation, strip], api_name="predict",
    )


TAB_BUILDERS = {"image": image_tab, "hierarchy": hierarchy_tab, "speech": speech_tab}


def build_demo(pipelines: dict[str, object], trajectories_name: str | None = None):
    """The Gradio app: a tab per pipeline (by the name it was loaded by), built by the kind of pipeline it is; the
    components of tab i have element ids ending in `-i` (`upload-0`, `samples-1`, ...). Video tabs pick among the
    trajectories of the data set `trajectories_name` (default: rendered with ViZDoom)."""
    builders = {**TAB_BUILDERS, "video": functools.partial(video_tab, trajectories_name=trajectories_name)}
    with gr.Blocks(title="hf-vqvae", analytics_enabled=False) as demo:
        gr.Markdown(
            "# hf-vqvae\nVQ-VAE (van den Oord et al. 2017): images, speech and video through discrete codes and back, "
            "new ones drawn from a prior over the codes, and frames predicted from actions."
        )
        for tab, (name, pipeline) in enumerate(pipelines.items()):
            kind = tab_of(pipeline)
            with gr.Tab(f"{kind}: {tab_title(name)}"):
                builders[kind](pipeline, tab)
    return demo


def load_demo(
    names: list[str], trajectories_name: str | None = None, device: str | None = None, cache_dir: str | None = None
):
    """The app over the pipelines `names` (folders or Hub ids), loaded; what a Space's app file calls."""
    pipelines = {name: load_pipeline(name, device=device, cache_dir=cache_dir) for name in names}
    return build_demo(pipelines, trajectories_name)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    demo = load_demo(args.pipeline or quick_start_pipelines(), args.trajectories, args.device, args.cache_dir)
    demo.launch(server_name=args.server_name, server_port=args.server_port, share=False)

"""The browser demo (`scripts/demo.py`, `commands/demo/`): what its image tab computes, the pipelines it loads, and
(slow) the app itself, started on a free port and driven in a real headless Chromium."""

import io
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch

from hf_vqvae import (
    AudioVQVAEConfig, AudioVQVAEFeatureExtractor, AudioVQVAEModel, AudioVQVAEPipeline, HierarchicalVQVAEConfig,
    HierarchicalVQVAEModel, HierarchicalVQVAEPipeline, PixelCNNPriorConfig, PixelCNNPriorModel, VideoPredictionPipeline,
    VideoPriorConfig, VideoPriorModel, VQVAEConfig, VQVAEModel, VQVAEPipeline,
)
from hf_vqvae.commands.demo import image, pipelines, speech, video
from hf_vqvae.data.worlds import WORLD_ACTIONS

from conftest import TINY_VQVAE
from test_audio_pipeline import tiny_prior as tiny_speech_prior
from test_audio_vqvae import TINY_AUDIO, speech_like
from test_hierarchy import TINY_STAGE2, TINY_TOP_PRIOR
from test_video_prior import TINY_VIDEO_PRIOR
from synthetic_trajectories import ACTIONS, synthetic_trajectories
from launching import Run, free_port, script


# The browser: Debian's chromium (apt-get install chromium), driven by playwright without a browser download.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Where the browser test also leaves its screenshots (the docs' are made so), besides its temporary folder.
SCREENSHOTS_ENV = "HF_VQVAE_DEMO_SCREENSHOTS"
# A trained image pipeline's folder (the quick start's outputs/prior/pipeline) for the image tab instead of the tiny
# untrained one, so that the docs' screenshots show what a trained model does; the checks are the same.
TRAINED_PIPELINE_ENV = "HF_VQVAE_DEMO_PIPELINE"
SERVER_START_TIMEOUT_S = 120
BROWSER_TIMEOUT_MS = 60_000


def tiny_pipeline(num_classes: int = 2) -> VQVAEPipeline:
    config = VQVAEConfig(**TINY_VQVAE)
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(
        num_embeddings=config.num_embeddings, grid_height=4, grid_width=4, hidden_channels=8, num_layers=2,
        kernel_size=3, skip_channels=8, num_classes=num_classes, id2label={0: "cats", 1: "dogs"} if num_classes else None,
    ))
    vqvae = VQVAEModel(config).eval()
    with torch.no_grad():  # codes far apart, so that other codes decode to visibly other images
        vqvae.quantizer.embedding.mul_(20)
    return VQVAEPipeline(vqvae=vqvae, prior=prior.eval())


def photo(width: int = 40, height: int = 30) -> PIL.Image.Image:
    """Smooth colour ramps (something a tiny VQ-VAE can roughly keep), not square, so cropping shows."""
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    return PIL.Image.fromarray((np.stack([x, y, 1 - x * y], axis=-1) * 255).round().astype(np.uint8))


def test_reconstruction_is_the_pipelines_with_its_codes_psnr_and_bits():
    pipeline = tiny_pipeline()
    result = image.reconstruct(pipeline, photo())

    pixel_values = image.image_processor_of(pipeline)([photo()], return_tensors="pt")["pixel_values"]
    expected = pipeline(image=pixel_values, output_type="pt")
    assert torch.equal(result.codes, expected.codes[0])
    original = (pixel_values + 1) / 2
    mse = (original - expected.images).pow(2).mean()
    assert result.psnr == pytest.approx(float(10 * torch.log10(1 / mse)), abs=1e-4)
    assert result.code_bits == 4 * 4 * 4  # a 4x4 grid of codes from K = 16: 4 bits each
    assert result.pixel_bits == 16 * 16 * 3 * 8
    assert f"{result.psnr:.2f} dB" in result.summary(16) and "96.0x fewer" in result.summary(16)

    # Shown enlarged to 256x256 each, side by side with a gap: the right half is the reconstruction, pixel for pixel.
    side = image.MIN_SHOWN_SIDE
    assert result.pair.height == side and result.pair.width > 2 * side
    shown = np.asarray(result.pair)[:: side // 16, -side :: side // 16]
    decoded = (expected.images[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(shown.astype(float) - decoded).max() <= 1


def test_code_map_gives_each_code_its_own_colour_and_neighbours_different_ones():
    codes = torch.arange(16).reshape(4, 4)
    colours = np.asarray(image.code_map(codes, 16)).reshape(16, 3)
    assert len({tuple(colour) for colour in colours}) == 16
    consecutive = np.abs(colours[1:].astype(int) - colours[:-1].astype(int)).sum(axis=1)
    assert consecutive.min() > 60


def test_samples_follow_seed_class_and_count():
    pipeline = tiny_pipeline()
    assert image.class_names(pipeline) == ["cats", "dogs"]
    first = np.asarray(image.sample(pipeline, 3, seed=5, temperature=1.0, class_name="dogs"))
    assert np.array_equal(first, np.asarray(image.sample(pipeline, 3, seed=5, temperature=1.0, class_name="dogs")))
    assert not np.array_equal(first, np.asarray(image.sample(pipeline, 3, seed=6, temperature=1.0, class_name="dogs")))
    assert first.shape == (128, 3 * 128, 3)  # three 16x16 samples, each enlarged to 128x128
    other_class = np.asarray(image.sample(pipeline, 3, seed=5, temperature=1.0, class_name="cats"))
    assert np.abs(first.astype(int) - other_class).max() > 4

    expected = pipeline(batch_size=3, class_labels=1, generator=torch.Generator().manual_seed(5), output_type="np")
    shrunk = first[::8, ::8] / 255  # back to one pixel per pixel: the three samples side by side
    assert np.abs(shrunk - np.concatenate(list(expected.images), axis=1)).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("call, message", [
    (lambda p: image.sample(p, 0, 0, 1.0, "cats"), "the number of images must be >= 1, got 0"),
    (lambda p: image.sample(p, 1, 0, 1.0, "birds"), "pick a class: one of ['cats', 'dogs'], got 'birds'"),
    (lambda p: image.reconstruct(p, None), "upload an image to reconstruct"),
])
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError) as error:
        call(tiny_pipeline())
    assert message in str(error.value)


def test_unconditional_prior_samples_without_a_class():
    pipeline = tiny_pipeline(num_classes=0)
    assert image.class_names(pipeline) == []
    assert image.sample(pipeline, 2, seed=0, temperature=0.5).size == (2 * 128, 128)


def test_hierarchy_samples_frames_through_both_stages():
    vqvae = VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()
    pipeline = HierarchicalVQVAEPipeline(
        vqvae=vqvae, stage2=HierarchicalVQVAEModel(HierarchicalVQVAEConfig(**TINY_STAGE2)).eval(),
        prior=PixelCNNPriorModel(PixelCNNPriorConfig(**TINY_TOP_PRIOR)).eval(),
    )
    assert image.class_names(pipeline) == [] and pipelines.tab_of(pipeline) == "hierarchy"
    frames = np.asarray(image.sample(pipeline, 2, seed=3, temperature=1.0))
    expected = pipeline(batch_size=2, generator=torch.Generator().manual_seed(3), output_type="np").images
    assert np.abs(frames[::8, 128::8] / 255 - expected[1]).max() <= 1 / 255 + 1e-6


def tiny_speech_pipeline() -> AudioVQVAEPipeline:
    vqvae = AudioVQVAEModel(AudioVQVAEConfig(**TINY_AUDIO)).eval()
    return AudioVQVAEPipeline(
        vqvae=vqvae, prior=tiny_speech_prior(), feature_extractor=AudioVQVAEFeatureExtractor.for_model(vqvae.config)
    )


def test_speech_is_reconstructed_and_converted_as_the_pipeline_does_from_gradios_audio():
    pipeline = tiny_speech_pipeline()
    pcm = (speech_like(1, 640)[0].numpy() * 20000).astype(np.int16)  # 16-bit PCM, as a browser recording arrives
    (rate, reconstruction), (_, conversion) = speech.reconstruct_and_convert(pipeline, (16000, pcm), "ann", "bob", seed=0)

    expected = pipeline(audio=pcm.astype(np.float32) / 32768, speaker="ann", generator=torch.Generator().manual_seed(0))
    assert rate == 16000 and np.array_equal(reconstruction, expected.audios[0])
    converted = pipeline(audio=pcm.astype(np.float32) / 32768, speaker="bob", generator=torch.Generator().manual_seed(0))
    assert np.array_equal(conversion, converted.audios[0]) and not np.array_equal(conversion, reconstruction)

    stereo = speech.reconstruct_and_convert(pipeline, (16000, np.stack([pcm, pcm], axis=1)), "ann", "bob", seed=0)
    assert np.array_equal(stereo[0][1], reconstruction)  # both channels alike: their mean is the mono clip
    cut = speech.reconstruct_and_convert(pipeline, (16000, pcm), "ann", "bob", seed=0, max_seconds=0.02)
    assert cut[0][1].shape == (320,)
    resampled = speech.reconstruct_and_convert(pipeline, (8000, pcm[:320]), "ann", "bob", seed=0)
    assert resampled[0][1].shape == (640,)


def test_speech_is_generated_in_the_voice_asked_for():
    pipeline = tiny_speech_pipeline()
    rate, audio = speech.generate(pipeline, "cy", seed=1, temperature=1.0)
    expected = pipeline(batch_size=1, speaker=2, generator=torch.Generator().manual_seed(1)).audios[0]
    assert rate == 16000 and np.array_equal(audio, expected)
    with pytest.raises(ValueError, match=r"pick a speaker: one of \['ann', 'bob', 'cy'\], got 'dan'"):
        speech.generate(pipeline, "dan", seed=1, temperature=1.0)
    with pytest.raises(ValueError, match="record or upload a clip first"):
        speech.reconstruct_and_convert(pipeline, None, "ann", "bob", seed=0)


def tiny_video_pipeline(actions: tuple[str, ...] = ACTIONS) -> VideoPredictionPipeline:
    vqvae = VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()
    with torch.no_grad():  # codes far apart, so that other codes decode to visibly other frames
        vqvae.quantizer.embedding.mul_(20)
    prior_config = VideoPriorConfig(**{**TINY_VIDEO_PRIOR, "num_actions": len(actions)}, action_names=list(actions))
    prior = VideoPriorModel(prior_config).eval()
    pipeline = VideoPredictionPipeline(vqvae=vqvae, video_prior=prior)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def gif_frames(path) -> list[np.ndarray]:
    """Every frame of a GIF as RGB, each repeated as many quarter seconds as it is shown (PIL merges identical
    successive frames into one longer one)."""
    frames = []
    with PIL.Image.open(path) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            frames += [np.asarray(gif.convert("RGB"), dtype=float)] * round(gif.info["duration"] / 250)
    return frames


def test_video_prediction_is_the_pipelines_as_a_gif_and_a_strip_beside_the_recorded_frames(tmp_path):
    pipeline = tiny_video_pipeline()
    trajectory = synthetic_trajectories(1, 5)[0]  # 2 observed frames (the prior's context), 3 recorded after them
    assert video.recorded_actions(pipeline, trajectory) == ", ".join(ACTIONS[a] for a in trajectory["actions"][1:4])

    result = video.predict(pipeline, trajectory["frames"], "turn_left, 2 stay", seed=4, temperature=1.0, folder=tmp_path)
    expected = pipeline(frames=trajectory["frames"][:2], actions=[1, 2, 0], generator=torch.Generator().manual_seed(4))
    assert [np.asarray(frame).tolist() for frame in result.frames] == [np.asarray(f).tolist() for f in expected.frames[0]]
    other_seed = video.predict(pipeline, trajectory["frames"], "turn_left, 2 stay", seed=5, temperature=1.0, folder=tmp_path)
    assert any(np.abs(np.asarray(a, int) - np.asarray(b)).max() > 8 for a, b in zip(result.frames, other_seed.frames))

    # The GIF: the 2 observed frames then the 3 predicted ones, each enlarged to 256x256, a quarter second each.
    shown = gif_frames(result.gif)
    assert Path(result.gif).parent == tmp_path and len(shown) == 5 and shown[0].shape == (256, 256, 3)
    for gif_frame, frame in zip(shown, trajectory["frames"][:2] + result.frames):
        enlarged = np.asarray(image.enlarged(frame.convert("RGB")), dtype=float)
        assert np.abs(gif_frame - enlarged).mean() < 8  # a GIF keeps 256 colours
    # The strip (3x3 frames of 16x16, enlarged 3x): observed frames, recorded next frames, predicted frames, a row each.
    strip = np.asarray(result.strip)
    assert strip.shape == (3 * 48, 3 * 48, 3)
    assert np.array_equal(strip[96::3, ::3], np.concatenate([np.asarray(f) for f in result.frames], axis=1))
    assert np.array_equal(strip[48:96:3, ::3], np.concatenate([np.asarray(f) for f in trajectory["frames"][2:]], axis=1))


def test_video_takes_uploaded_frames_a_gif_or_images_in_name_order(tmp_path):
    frames = synthetic_trajectories(1, 3, resolution=24)[0]["frames"]  # another size: resized to the VQ-VAE's 16
    for index, frame in reversed(list(enumerate(frames))):
        frame.save(tmp_path / f"frame-{index:02d}.png")
    uploads = [str(path) for path in sorted(tmp_path.glob("*.png"), reverse=True)]
    loaded = video.trajectory_frames(None, 0, uploads)
    assert [np.asarray(f).tolist() for f in loaded] == [np.asarray(f).tolist() for f in frames]

    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=100)
    from_gif = video.uploaded_frames([str(tmp_path / "clip.gif")])
    assert len(from_gif) == 3 and from_gif[2].size == (24, 24)
    assert np.abs(np.asarray(from_gif[2], float) - np.asarray(frames[2], float)).mean() < 8

    pipeline = tiny_video_pipeline()
    result = video.predict(pipeline, from_gif, "stay", seed=0, temperature=1.0, folder=tmp_path / "gifs")
    resized = [frame.resize((16, 16), PIL.Image.BICUBIC) for frame in from_gif[:2]]
    expected = pipeline(frames=resized, actions=[0], generator=torch.Generator().manual_seed(0)).frames[0]
    assert np.array_equal(np.asarray(result.frames[0]), np.asarray(expected[0]))


def test_video_trajectories_come_from_a_saved_data_set_its_validation_split_first(tmp_path):
    from datasets import Dataset, DatasetDict, Features, Image, List, Value

    DatasetDict(train=synthetic_trajectories(3, 4), validation=synthetic_trajectories(5, 4, seed=1)).save_to_disk(tmp_path / "t")
    trajectories = video.load_trajectories(tiny_video_pipeline(), str(tmp_path / "t"), max_trajectories=4)
    assert len(trajectories) == 4
    assert trajectories[0]["actions"] == synthetic_trajectories(5, 4, seed=1)[0]["actions"]
    picked = video.trajectory_frames(trajectories, 3, uploads=None)
    assert np.array_equal(np.asarray(picked[1]), np.asarray(trajectories[3]["frames"][1]))

    synthetic_trajectories(1, 4).rename_column("actions", "moves").save_to_disk(tmp_path / "other")
    with pytest.raises(ValueError, match="the trajectories have no 'actions' column"):
        video.load_trajectories(tiny_video_pipeline(), str(tmp_path / "other"))
    with pytest.raises(ValueError, match=r"the actions of .* are \['stay', 'turn_left', 'turn_right'\] but the video prior's are \['noop'"):
        video.load_trajectories(tiny_video_pipeline(actions=WORLD_ACTIONS), str(tmp_path / "t"))
    unnamed = Dataset.from_dict(
        {"frames": [synthetic_trajectories(1, 4)[0]["frames"]], "actions": [[0, 2, 1, 0]]},
        features=Features({"frames": List(Image()), "actions": List(Value("int64"))}),
    )
    unnamed.save_to_disk(tmp_path / "unnamed")
    with pytest.raises(ValueError, match=r"take action id 2 but the video prior knows 2 actions \(ids 0-1\)"):
        video.load_trajectories(tiny_video_pipeline(actions=("stay", "turn_left")), str(tmp_path / "unnamed"))


def test_video_trajectories_without_a_data_set_are_rendered_at_the_pipelines_frame_size():
    pytest.importorskip("vizdoom", reason="needs the worlds extra: pip install 'hf-vqvae[worlds]'")
    pipeline = tiny_video_pipeline(actions=WORLD_ACTIONS)
    trajectories = video.load_trajectories(pipeline)
    assert len(trajectories) == video.RENDERED_EPISODES
    frames = trajectories[0]["frames"]
    assert len(frames) == 2 + video.PROPOSED_PREDICTIONS and frames[0].size == (16, 16)  # the context, then 8 more
    assert len(video.parse_actions(pipeline, video.recorded_actions(pipeline, trajectories[0]))) == video.PROPOSED_PREDICTIONS
    assert trajectories.features["actions"].feature.names == list(WORLD_ACTIONS)


def test_video_trajectories_without_a_data_set_or_vizdoom_name_both_ways_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "vizdoom", None)  # as if the worlds extra were not installed
    with pytest.raises(ImportError, match=r"pass --trajectories with a data set, or rendering .* needs the `vizdoom`"):
        video.load_trajectories(tiny_video_pipeline(actions=WORLD_ACTIONS))


@pytest.mark.parametrize("call, message", [
    (lambda p: video.parse_actions(p, " , "), "give at least one action, for example stay; the actions are"),
    (lambda p: video.parse_actions(p, "stay jump 7"), "unknown action(s) ['jump', '7']; the actions are ['stay', "),
    (lambda p: video.parse_actions(p, "stay " * 17), "the tab predicts at most 16 frames at once, got 17 actions"),
    (lambda p: video.predict(p, synthetic_trajectories(1, 1)[0]["frames"], "stay", 0, 1.0, Path("unused")),
     "the trajectory has 1 frames; the video prior observes 2"),
    (lambda p: video.trajectory_frames(synthetic_trajectories(2, 3), 2, None), "pick a trajectory in [0, 1], got 2"),
    (lambda p: video.uploaded_frames([]), "upload frames: an animated GIF, or images"),
])
def test_video_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError) as error:
        call(tiny_video_pipeline())
    assert message in str(error.value)
    assert video.parse_actions(tiny_video_pipeline(), "turn_right,0 1") == [2, 0, 1]


def test_the_app_has_a_tab_per_pipeline_by_its_kind(tmp_path):
    gradio = pytest.importorskip("gradio", reason="needs the demo extra: pip install 'hf-vqvae[demo]'")
    from hf_vqvae.commands.demo.app import build_demo

    trajectories = synthetic_trajectories(2, 6)
    trajectories.save_to_disk(tmp_path / "trajectories")
    demo = build_demo({
        "org/photos": tiny_pipeline(), "org/unconditional": tiny_pipeline(num_classes=0), "org/speech": tiny_speech_pipeline(),
        "org/world": tiny_video_pipeline(),
    }, trajectories_name=str(tmp_path / "trajectories"))
    tabs = [block.label for block in demo.blocks.values() if isinstance(block, gradio.Tab)]
    assert tabs == ["image: org/photos", "image: org/unconditional", "speech: org/speech", "video: org/world"]
    dropdowns = [block for block in demo.blocks.values() if isinstance(block, gradio.Dropdown)]
    speakers = [["ann", "bob", "cy"]] * 3  # the clip's, the conversion's and the generation's
    trajectory_choices = ["0: 6 frames", "1: 6 frames"]
    assert [[choice[0] for choice in dropdown.choices] for dropdown in dropdowns] == [["cats", "dogs"], *speakers, trajectory_choices]
    buttons = [block.value for block in demo.blocks.values() if isinstance(block, gradio.Button)]
    assert "Generate" in buttons and "Predict" in buttons
    actions = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "actions-3")
    assert actions.value == ", ".join(ACTIONS[action] for action in trajectories[0]["actions"][1:5])
    with pytest.raises(ValueError, match="the demo has no tab for a str"):
        build_demo({"text": "not a pipeline"})


def test_tabs_name_hub_ids_and_relative_folders_as_given_and_absolute_folders_by_their_end():
    assert pipelines.tab_title("org/photos") == "org/photos"
    assert pipelines.tab_title("outputs/prior/pipeline") == "outputs/prior/pipeline"
    assert pipelines.tab_title("/home/ann/runs/prior/pipeline") == "prior/pipeline"


def test_loads_a_saved_pipeline_by_its_class_and_refuses_a_foreign_one(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "pipeline")
    loaded = pipelines.load_pipeline(str(tmp_path / "pipeline"), device="cpu")
    assert isinstance(loaded, VQVAEPipeline) and pipelines.tab_of(loaded) == "image"

    index = tmp_path / "pipeline" / "model_index.json"
    index.write_text(index.read_text().replace("VQVAEPipeline", "StableDiffusionPipeline"))
    with pytest.raises(ValueError, match="names the pipeline class 'StableDiffusionPipeline', which is none of"):
        pipelines.load_pipeline(str(tmp_path / "pipeline"))


def test_without_pipelines_it_names_the_readme_folders_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="outputs/prior/pipeline"):
        pipelines.quick_start_pipelines(tmp_path)
    tiny_pipeline().save_pretrained(tmp_path / "outputs" / "prior" / "pipeline")
    assert pipelines.quick_start_pipelines(tmp_path) == [str(tmp_path / "outputs" / "prior" / "pipeline")]


def wait_until_served(url: str, server: Run, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        assert server.poll() is None, f"the demo ended before serving:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"the demo did not serve {url} in {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)


def served_bytes(page, element_id: str) -> bytes:
    """The file behind the image the page shows in the Gradio image component `element_id`, as the server sent it."""
    picture = page.locator(f"#{element_id} img")
    picture.wait_for(state="visible", timeout=BROWSER_TIMEOUT_MS)
    response = page.request.get(picture.get_attribute("src"), timeout=BROWSER_TIMEOUT_MS)
    assert response.ok, response.status
    return response.body()


def shown_image(page, element_id: str) -> PIL.Image.Image:
    return PIL.Image.open(io.BytesIO(served_bytes(page, element_id))).convert("RGB")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (apt-get install chromium)")
def test_in_a_real_browser_upload_reconstructs_sample_draws_and_predict_animates(tmp_path):
    """Also makes the docs' screenshots (docs/demo.md): `HF_VQVAE_DEMO_SCREENSHOTS=docs/images
    HF_VQVAE_DEMO_PIPELINE=outputs/prior/pipeline python -m pytest -m slow tests/test_demo.py -k browser` writes them
    there (they always go to the test's temporary folder too)."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the demo extra: pip install 'hf-vqvae[demo]'")
    pytest.importorskip("gradio", reason="needs the demo extra: pip install 'hf-vqvae[demo]'")
    video_pipeline = tiny_video_pipeline()
    folders = tmp_path / "prior" / "pipeline", tmp_path / "world-video-prior" / "pipeline"  # as the README names them
    if os.environ.get(TRAINED_PIPELINE_ENV):
        folders = Path(os.environ[TRAINED_PIPELINE_ENV]).resolve(), folders[1]
        pipeline, uploaded = VQVAEPipeline.from_pretrained(folders[0]), PIL.Image.fromarray(skimage.data.coffee())
    else:
        pipeline, uploaded = tiny_pipeline(), photo()
        pipeline.save_pretrained(folders[0])
    video_pipeline.save_pretrained(folders[1])
    trajectories = synthetic_trajectories(2, 6)
    trajectories.save_to_disk(tmp_path / "trajectories")
    uploaded.save(tmp_path / "photo.png")
    screenshots = [tmp_path] + ([Path(os.environ[SCREENSHOTS_ENV])] if os.environ.get(SCREENSHOTS_ENV) else [])

    port = free_port()
    log = tmp_path / "demo.log"
    with open(log, "w") as log_file:
        server = Run([
            sys.executable, script("demo.py"), "--pipeline", *map(str, folders),
            "--trajectories", str(tmp_path / "trajectories"), "--device", "cpu", "--server_port", str(port),
        ], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_served(url, server, log)
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=BROWSER_TIMEOUT_MS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1100})
                page.set_default_timeout(BROWSER_TIMEOUT_MS)
                page.goto(url)
                page.locator("#upload-0 input[type=file]").set_input_files(str(tmp_path / "photo.png"))
                page.get_by_role("button", name="Reconstruct").click()
                page.locator("#summary-0").get_by_text("PSNR").wait_for()
                pair = shown_image(page, "reconstruction-0")
                page.get_by_role("button", name="Sample").click()
                samples = shown_image(page, "samples-0")
                for folder in screenshots:
                    page.screenshot(path=str(folder / "demo-image-tab.png"), full_page=True)

                page.get_by_role("tab", name="video: world-video-prior/pipeline").click()
                page.get_by_role("button", name="Predict").click()
                strip = shown_image(page, "prediction-strip-1")
                gif = io.BytesIO(served_bytes(page, "prediction-gif-1"))
                for folder in screenshots:
                    page.screenshot(path=str(folder / "demo-video-tab.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.kill_all()

    expected = image.reconstruct(pipeline, uploaded)
    assert pair.size == expected.pair.size
    assert np.abs(np.asarray(pair, dtype=float) - np.asarray(expected.pair, dtype=float)).max() <= 1
    first_class = (image.class_names(pipeline) or [None])[0]
    drawn = image.sample(pipeline, 4, seed=0, temperature=1.0, class_name=first_class)  # the tab's defaults
    assert samples.size == drawn.size
    assert np.abs(np.asarray(samples, dtype=float) - np.asarray(drawn, dtype=float)).max() <= 1
    # The video tab's defaults: trajectory 0, its recorded actions (4 after the 2 observed frames), seed 0.
    predicted = video.predict(
        video_pipeline, trajectories[0]["frames"], video.recorded_actions(video_pipeline, trajectories[0]), 0, 1.0, tmp_path
    )
    assert np.array_equal(np.asarray(strip), np.asarray(predicted.strip))
    assert len(gif_frames(gif)) == 2 + 4

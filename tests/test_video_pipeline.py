import numpy as np
import PIL.Image
import pytest
import torch

from hf_vqvae import (
    VideoPredictionPipeline,
    VideoPriorConfig,
    VideoPriorModel,
    VQVAEConfig,
    VQVAEImageProcessor,
    VQVAEModel,
    prediction_strip,
    save_gif,
)

from conftest import TINY_VQVAE, put_in_hub_cache
from synthetic_trajectories import ACTIONS, synthetic_trajectories
from test_video_prior import TINY_VIDEO_PRIOR


@pytest.fixture
def pipeline():
    vqvae = VQVAEModel(VQVAEConfig(**TINY_VQVAE)).eval()
    prior = VideoPriorModel(VideoPriorConfig(**TINY_VIDEO_PRIOR, action_names=list(ACTIONS))).eval()
    pipeline = VideoPredictionPipeline(vqvae=vqvae, video_prior=prior, image_processor=VQVAEImageProcessor.for_vqvae(vqvae.config))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def episode():
    return synthetic_trajectories(1, 4)[0]["frames"]


def test_predicts_one_frame_per_action_generated_in_latent_space_and_decoded_at_the_end(pipeline, episode):
    output = pipeline(frames=episode, actions=[0, 2, "turn_left"], generator=torch.Generator().manual_seed(0))
    assert len(output.frames) == 1 and len(output.frames[0]) == 3
    assert all(isinstance(frame, PIL.Image.Image) and frame.size == (16, 16) for frame in output.frames[0])
    assert output.codes.shape == (1, 3, 4, 4) and output.context_codes.shape == (1, 4, 4, 4)
    # The context codes are the VQ-VAE's codes of the frames; the predicted ones are the prior's samples from them.
    pixel_values = pipeline.image_processor(episode, return_tensors="pt")["pixel_values"]
    assert torch.equal(output.context_codes[0], pipeline.vqvae.encode(pixel_values).indices)
    expected = pipeline.video_prior.sample(output.context_codes, torch.tensor([[0, 2, 1]]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(output.codes, expected)
    decoded = pipeline.vqvae.decode(expected[0]).reconstruction
    assert np.allclose(np.stack([np.asarray(frame) for frame in output.frames[0]]),
                       np.asarray(pipeline.image_processor.postprocess(decoded, "np") * 255).round(), atol=1)


def test_output_types_batches_and_input_forms_agree(pipeline, episode):
    def run(frames, actions=(1, 1), **kwargs):
        return pipeline(frames=frames, actions=list(actions), generator=torch.Generator().manual_seed(1), **kwargs)

    reference = run(episode)
    as_arrays = np.stack([np.asarray(frame) for frame in episode])
    assert torch.equal(run(as_arrays).codes, reference.codes)
    assert torch.equal(run(list(as_arrays)).codes, reference.codes)
    assert torch.equal(run(as_arrays.astype(np.float32) / 255).codes, reference.codes)
    pixel_values = torch.from_numpy(as_arrays).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(run(pixel_values).codes, reference.codes)
    np_frames = run(episode, output_type="np").frames
    assert np_frames.shape == (1, 2, 16, 16, 3) and 0 <= np_frames.min() and np_frames.max() <= 1
    assert run(episode, output_type="pt").frames.shape == (1, 2, 3, 16, 16)
    assert torch.equal(run(episode, output_type="latent").frames, reference.codes)
    batch = pipeline(frames=[episode, episode[::-1]], actions=[[1, 1], [0, 2]], generator=torch.Generator().manual_seed(1))
    assert len(batch.frames) == 2 and batch.codes.shape == (2, 2, 4, 4)
    same = pipeline(frames=[episode, episode], actions=[1, 1], generator=torch.Generator().manual_seed(2)).codes
    assert same.shape == (2, 2, 4, 4)
    frames, codes = run(episode, return_dict=False)
    assert torch.equal(codes, reference.codes)


def test_gif_and_strip_helpers(pipeline, episode, tmp_path):
    output = pipeline(frames=episode, actions=[0, 1, 2], generator=torch.Generator().manual_seed(0))
    path = save_gif(list(episode) + output.frames[0], tmp_path / "prediction.gif", fps=2)
    with PIL.Image.open(path) as gif:
        durations = []
        for index in range(gif.n_frames):  # PIL merges identical successive frames, adding up their durations
            gif.seek(index)
            durations.append(gif.info["duration"])
        assert sum(durations) == 7 * 500 and gif.size == (16, 16)
    strip = prediction_strip(episode, None, output.frames[0])
    assert strip.size == (4 * 16, 2 * 16)
    with pytest.raises(ValueError, match="save_gif takes a non-empty list of PIL images"):
        save_gif(output.codes, tmp_path / "codes.gif")


def test_save_load_by_hub_id_offline_and_push(pipeline, episode, tmp_path, offline_hub, recorded_uploads):
    pipeline.save_pretrained(tmp_path / "pipeline")
    put_in_hub_cache(offline_hub, "org/tiny-video", tmp_path / "pipeline")
    loaded = VideoPredictionPipeline.from_pretrained("org/tiny-video")
    loaded.set_progress_bar_config(disable=True)
    first = pipeline(frames=episode, actions=[2, 2, 0], generator=torch.Generator().manual_seed(4))
    second = loaded(frames=episode, actions=[2, 2, 0], generator=torch.Generator().manual_seed(4))
    assert torch.equal(first.codes, second.codes)
    assert loaded.video_prior.config.action_names == list(ACTIONS)

    loaded.push_to_hub("org/video", metrics={"psnr": 20.0})
    upload = recorded_uploads[-1]
    assert {"model_index.json", "vqvae/model.safetensors", "video_prior/model.safetensors", "README.md"} <= set(upload["files"])
    card = upload["files"]["README.md"].decode()
    assert "VideoPredictionPipeline.from_pretrained(\"org/video\")" in card and "| psnr | 20.0 |" in card
    assert upload["commit_message"] == "Upload video prediction pipeline with hf-vqvae"


def test_bad_inputs_name_the_problem(pipeline, episode):
    def call(frames=episode, actions=(0, 1), **kwargs):
        return pipeline(frames=frames, actions=actions if isinstance(actions, torch.Tensor) else list(actions), **kwargs)

    with pytest.raises(ValueError, match=r"`frames` holds 1 frames per sequence but the video prior predicts from 2 \(context_frames\)"):
        call(frames=episode[:1])
    with pytest.raises(ValueError, match=r"num_frames=3 but 2 actions were given"):
        call(num_frames=3)
    with pytest.raises(ValueError, match=r"`actions` must be action ids in \[0, 3\) \(num_actions\), got values in \[0, 5\]"):
        call(actions=(0, 5))
    with pytest.raises(ValueError, match=r"unknown action 'jump'; the video prior knows \['stay', 'turn_left', 'turn_right'\]"):
        call(actions=("jump",))
    with pytest.raises(ValueError, match=r"the frames are 32x32 pixels but the VQ-VAE takes 16x16 frames"):
        call(frames=[frame.resize((32, 32)) for frame in episode])
    with pytest.raises(ValueError, match=r"the frames have shape \(3, 16, 20\) \(C, H, W\) but the VQ-VAE takes \(3, 16, 16\)"):
        call(frames=torch.zeros(4, 3, 16, 20))
    with pytest.raises(ValueError, match=r"`actions` must hold one list of actions per sequence of frames \(2\)"):
        pipeline(frames=[episode, episode], actions=[[0], [1], [2]])
    with pytest.raises(ValueError, match="output_type must be one of"):
        call(output_type="gif")
    with pytest.raises(ValueError, match=r"the video prior has num_embeddings=16 but the VQ-VAE's codebook has 32 codes"):
        VideoPredictionPipeline(VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, "num_embeddings": 32})), pipeline.video_prior)
    with pytest.raises(ValueError, match=r"models 4x4 code grids .* the VQ-VAE's latent grid is 8x8"):
        VideoPredictionPipeline(VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, "sample_size": 32})), pipeline.video_prior)


def test_tiny_temperatures_are_refused(pipeline, episode):
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0.001 .*got 1e-45"):
        pipeline(frames=episode, actions=[0, 1], temperature=1e-45)
    assert len(pipeline(frames=episode, actions=[0, 1], temperature=1e-3).frames[0]) == 2

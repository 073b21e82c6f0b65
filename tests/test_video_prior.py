import math

import pytest
import torch
from transformers import AutoModel

from hf_vqvae import VideoPriorConfig, VideoPriorModel
from model_contracts import (
    assert_export_matches_eager, assert_gradients_reach, assert_input_embeddings_are, assert_onnx_export_matches_eager,
)


TINY_VIDEO_PRIOR = dict(
    num_embeddings=16, grid_height=4, grid_width=4, context_frames=2, num_actions=3, hidden_channels=8, num_layers=2,
    kernel_size=3, skip_channels=8, context_embedding_dim=4, conditioning_channels=8, conditioning_layers=1,
)


@pytest.fixture
def prior():
    return VideoPriorModel(VideoPriorConfig(**TINY_VIDEO_PRIOR)).eval()


def random_sequence(frames=5, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (batch, frames, 4, 4), generator=generator)
    actions = torch.randint(0, 3, (batch, frames - 2), generator=generator)
    return codes, actions


def test_loss_is_the_mean_nll_of_the_predicted_frames_and_bits_per_code_agree(prior):
    codes, actions = random_sequence()
    output = prior(input_ids=codes, actions=actions, labels=codes)
    assert output.logits.shape == (2, 3, 16, 4, 4)
    log_probs = output.logits.log_softmax(2)
    expected = -log_probs.gather(2, codes[:, 2:, None]).mean()
    assert torch.allclose(output.loss, expected, atol=1e-6)
    bits = prior.bits_per_code(codes, actions)
    assert bits.shape == (2, 3)
    assert torch.allclose(bits.mean(), output.loss / torch.log(torch.tensor(2.0)), atol=1e-5)
    assert isinstance(prior(codes, actions, return_dict=False), tuple)


def test_causal_in_time_and_in_raster_order(prior):
    """Changing the code at (frame t, row r, column c) changes only the logits of later positions of frame t and of
    the frames within `context_frames` after it."""
    codes, actions = random_sequence(frames=6)
    logits = prior(codes, actions).logits  # frames 2..5
    for frame, row, column in [(2, 1, 2), (3, 0, 0), (4, 3, 3), (0, 2, 1)]:
        changed = codes.clone()
        changed[:, frame, row, column] = (changed[:, frame, row, column] + 1) % 16
        difference = (prior(changed, actions).logits - logits).abs().amax(dim=(0, 2))  # (predicted frames, h, w)
        for predicted in range(4):
            target = predicted + 2
            if target < frame or target > frame + 2:
                assert difference[predicted].max() == 0, (frame, target)
            elif target == frame:
                positions = torch.arange(16).reshape(4, 4)
                after = positions > row * 4 + column
                assert difference[predicted][~after].max() == 0, "a position saw itself or a later one"
                assert not after.any() or difference[predicted][after].max() > 0
            else:
                assert difference[predicted].max() > 0, "the frame ignores its context"


def test_an_action_changes_the_frame_it_leads_to_never_an_earlier_one(prior):
    codes, actions = random_sequence(frames=6)
    logits = prior(codes, actions).logits
    changed = actions.clone()
    changed[:, 1] = (changed[:, 1] + 1) % 3  # the action leading to frame 3
    difference = (prior(codes, changed).logits - logits).abs().flatten(2).amax(dim=(0, 2))
    assert difference[0] == 0 and difference[1] > 0
    # Teacher forcing: later frames read their own actions and the true codes, so they do not change either.
    assert difference[2:].max() == 0

    # Generation: frames before the changed action are identical, the frames from it on differ (the untrained
    # model's action embeddings are magnified so that an action moves its distribution visibly).
    with torch.no_grad():
        prior.action_embedding.weight.mul_(30)
    context = codes[:, :2]
    actions = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]])
    changed = actions.clone()
    changed[:, 2] = 2
    first = prior.sample(context, actions, generator=torch.Generator().manual_seed(3))
    second = prior.sample(context, changed, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first[:, :2], second[:, :2])
    assert not torch.equal(first[:, 2:], second[:, 2:])


@pytest.mark.parametrize("batch_size", [1, 4])
def test_cached_generation_equals_plain_generation(prior, batch_size, sampler_step):
    codes, _ = random_sequence(frames=3, batch=batch_size)
    actions = torch.tensor([[0, 1, 2], [2, 2, 0], [1, 0, 1], [2, 1, 0]])[:batch_size]
    progress = []
    cached = prior.sample(codes, actions, generator=torch.Generator().manual_seed(7), progress_callback=lambda d, t: progress.append((d, t)))
    plain = prior.sample(codes, actions, generator=torch.Generator().manual_seed(7), use_cache=False)
    assert cached.shape == (batch_size, 3, 4, 4) and torch.equal(cached, plain)
    assert progress == [(rows, 12) for rows in range(1, 13)]
    # Only the last context_frames frames count: a longer context with the same last frames gives the same frames.
    longer = torch.cat([torch.zeros_like(codes[:, :2]), codes], dim=1)
    assert torch.equal(prior.sample(longer, actions, generator=torch.Generator().manual_seed(7)), cached)


def test_each_generated_frame_is_conditioned_on_the_generated_ones_before_it(prior):
    """Sampling frame by frame with the generated grids appended to the context gives the same frames."""
    codes, _ = random_sequence(frames=2)
    actions = torch.tensor([[0, 1, 2], [1, 0, 2]])
    generator = torch.Generator().manual_seed(5)
    together = prior.sample(codes, actions, generator=torch.Generator().manual_seed(5))
    context = codes
    for index in range(3):
        frame = prior.sample(context, actions[:, index : index + 1], generator=generator)
        assert torch.equal(frame[:, 0], together[:, index])
        context = torch.cat([context, frame], dim=1)


def test_save_and_load_round_trip_also_through_the_auto_classes(prior, tmp_path):
    prior.save_pretrained(tmp_path)
    loaded = VideoPriorModel.from_pretrained(tmp_path).eval()
    assert isinstance(AutoModel.from_pretrained(tmp_path), VideoPriorModel)
    codes, actions = random_sequence()
    assert torch.equal(loaded(codes, actions).logits, prior(codes, actions).logits)


def test_bad_inputs_name_the_problem(prior):
    codes, actions = random_sequence(frames=4)
    with pytest.raises(ValueError, match=r"`input_ids` holds 2 frames but the video prior needs at least 3 \(context_frames=2 \+ 1"):
        prior(codes[:, :2], actions[:, :0])
    with pytest.raises(ValueError, match=r"`context_ids` holds 1 frames but the video prior needs at least 2"):
        prior.sample(codes[:, :1], actions)
    with pytest.raises(ValueError, match=r"`actions` must have shape \(2, 2\): one action per frame to predict"):
        prior(codes, actions[:, :1])
    with pytest.raises(ValueError, match=r"`actions` must have shape \(2, num_frames >= 1\)"):
        prior.sample(codes, actions[:, :0])
    with pytest.raises(ValueError, match=r"`actions` must be action ids in \[0, 3\) \(num_actions\), got values in \[0, 3\]"):
        prior.sample(codes, torch.tensor([[0, 3], [1, 1]]))
    with pytest.raises(ValueError, match=r"`actions` must be action ids in \[0, 3\).*\[-1, 1\]"):
        prior(codes, torch.tensor([[0, -1], [1, 1]]))
    with pytest.raises(ValueError, match=r"`actions` must be integer action ids in \[0, 3\), got torch.float32"):
        prior(codes, actions.float())
    with pytest.raises(ValueError, match=r"`input_ids` must have shape \(batch_size, frames, 4, 4\).*got \(2, 4, 5, 4\)"):
        prior(torch.zeros(2, 4, 5, 4, dtype=torch.long), actions)
    with pytest.raises(ValueError, match=r"`input_ids` must hold codes in \[0, 16\)"):
        prior(codes + 16, actions)
    with pytest.raises(ValueError, match=r"VideoPriorConfig.action_names must be 3 strings"):
        VideoPriorConfig(**{**TINY_VIDEO_PRIOR, "action_names": ["left", "right"]})
    with pytest.raises(ValueError, match=r"VideoPriorConfig.context_frames must be a positive integer, got 0"):
        VideoPriorConfig(context_frames=0)
    with pytest.raises(ValueError, match=r"the video prior has num_embeddings=16 but the VQ-VAE's codebook has 32"):
        prior.check_compatible_with_vqvae(32, 4, 4)
    with pytest.raises(ValueError, match=r"models 4x4 code grids .* latent grid is 8x8"):
        prior.check_compatible_with_vqvae(16, 8, 8)


def test_empty_batches_are_errors_named_as_such(prior):
    empty_codes, empty_actions = torch.zeros(0, 2, 4, 4, dtype=torch.long), torch.zeros(0, 1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"empty batch: `context_ids` holds no sequences of code grids \(batch size 0\)"):
        prior.sample(empty_codes, empty_actions)
    with pytest.raises(ValueError, match=r"empty batch: `input_ids` holds no sequences of code grids"):
        prior(torch.zeros(0, 3, 4, 4, dtype=torch.long), empty_actions)
    with pytest.raises(ValueError, match=r"empty batch: `input_ids`"):
        prior.bits_per_code(torch.zeros(0, 3, 4, 4, dtype=torch.long), empty_actions)


@pytest.mark.parametrize("temperature", [1e-45, 1e-4, 0.0, math.inf])
def test_sampling_and_the_training_flag_refuse_temperatures_below_the_shared_minimum(prior, temperature):
    from hf_vqvae.training.recipes.video_prior import parse_args  # scripts/train_video_prior.py's flags

    codes, actions = random_sequence(frames=3)
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0.001"):
        prior.sample(codes, actions, temperature=temperature)
    with pytest.raises(ValueError, match=r"--prediction_temperature must lie in \[0.001, inf\)"):
        parse_args(["--prediction_temperature", str(temperature)])
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    cached = prior.sample(codes, actions, temperature=1e-3, generator=generator())
    assert torch.equal(cached, prior.sample(codes, actions, temperature=1e-3, generator=generator(), use_cache=False))
    assert parse_args(["--prediction_temperature", "1e-3"]).predictions.prediction_temperature == 1e-3


def test_forward_returns_the_pixelcnn_hidden_states_of_every_predicted_frame(prior):
    codes, actions = random_sequence()
    plain = prior(codes, actions)
    assert plain.hidden_states is None
    output = prior(codes, actions, output_hidden_states=True)
    # The embedded codes and the 2 gated layers, the 3 predicted frames of each sequence folded into the batch.
    assert len(output.hidden_states) == 3 and all(state.shape == (2 * 3, 8, 4, 4) for state in output.hidden_states)
    embedded = prior.get_input_embeddings()(codes[:, 2:]).permute(0, 1, 4, 2, 3)
    torch.testing.assert_close(output.hidden_states[0].unflatten(0, (2, 3)), embedded)
    torch.testing.assert_close(output.logits, plain.logits)
    with_loss = prior(codes, actions, labels=codes, output_hidden_states=True)
    assert_gradients_reach(with_loss.hidden_states, with_loss.loss)
    flagged = VideoPriorModel(VideoPriorConfig(**TINY_VIDEO_PRIOR, output_hidden_states=True)).eval()
    assert len(flagged(codes, actions).hidden_states) == 3
    assert len(flagged(codes, actions, return_dict=False)) == len(prior(codes, actions, return_dict=False)) + 1


def test_input_embeddings_are_the_pixelcnn_code_embedding_and_cannot_be_resized(prior):
    codes, actions = random_sequence()
    assert_input_embeddings_are(prior, prior.pixelcnn.code_embedding, dict(input_ids=codes, actions=actions))
    with pytest.raises(ValueError, match=r"num_embeddings, also the number of logits"):
        prior.resize_token_embeddings(32)


def test_exports_with_torch_export_and_the_exported_program_matches_eager(prior):
    codes, actions = random_sequence(seed=0)
    other_codes, other_actions = random_sequence(seed=1)
    assert_export_matches_eager(prior, dict(input_ids=codes, actions=actions), dict(input_ids=other_codes, actions=other_actions))
    with pytest.raises(ValueError, match=r"`actions` must be action ids in \[0, 3\)"):
        prior(codes, actions + 3)  # eager keeps its value checks


@pytest.mark.slow
def test_exports_to_onnx_and_onnxruntime_matches_eager(prior, tmp_path):
    codes, actions = random_sequence()
    assert_onnx_export_matches_eager(tmp_path / "video_prior.onnx", prior, dict(input_ids=codes, actions=actions))

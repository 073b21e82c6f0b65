"""Action-conditioned video prediction in latent space (section 4.4 of the VQ-VAE paper), measured on held-out
first-person trajectories rendered with ViZDoom (`pip install -e ".[worlds,bench]"`).

The script renders training and held-out trajectories (different seeds, so different episodes), trains a small image
VQ-VAE on the training frames (`training.recipes.vqvae`), encodes the trajectories into codes (`data.trajectories`), trains
the video prior on them (`training.recipes.video_prior`), then, on each held-out trajectory, gives the pipeline its first
`context_frames` frames and the next 10 actions and compares the 10 predicted frames with the true ones:

- per-frame PSNR (dB, frames in [0, 1]) of the prediction, next to two baselines measured in the same run: copying
  the last context frame, and the same model given shuffled actions (each trajectory gets another trajectory's
  actions); the VQ-VAE's reconstruction of the true frames is the ceiling a prediction through its codes can reach;
- bits per code of the prior on the true future codes, with the true and with the shuffled actions;
- the time to generate the 10 frames of the whole held-out batch (encode the context, sample, decode);
- a strip image per shown example (context, truth, prediction) in --output_dir.

    python benchmarks/video_prediction.py [--quick] [--output_dir outputs/video-benchmark] [--num_threads 1]
    python benchmarks/video_prediction.py --pipeline outputs/video-benchmark/video-prior/pipeline --temperature 0.5 1.0
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict

from hf_vqvae import VideoPredictionPipeline, prediction_strip
from hf_vqvae.data.trajectories import flatten_frames
from hf_vqvae.data.worlds import render_trajectories
from hf_vqvae.training.recipes import video_prior as video_prior_recipe
from hf_vqvae.training.recipes import vqvae as vqvae_recipe

from machine import describe_machine


PREDICTED_FRAMES = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/video-benchmark")
    parser.add_argument("--resolution", type=int, default=32, help="frame side; the VQ-VAE downsamples it 4 times")
    parser.add_argument("--train_episodes", type=int, default=400)
    parser.add_argument("--train_steps_per_episode", type=int, default=48)
    parser.add_argument("--heldout_episodes", type=int, default=32)
    parser.add_argument(
        "--heldout_offset", type=int, default=16,
        help="steps of each held-out episode skipped before its context: an episode starts with the player still",
    )
    parser.add_argument("--context_frames", type=int, default=6)
    parser.add_argument("--vqvae_steps", type=int, default=1500)
    parser.add_argument("--prior_steps", type=int, default=3000)
    parser.add_argument(
        "--temperature", type=float, nargs="+", default=[0.3, 1.0],
        help="of the prior's sampling; one table per value. PSNR rewards frames near the mean, so low temperatures "
        "(close to the most likely codes) score higher than faithful samples at 1.0",
    )
    parser.add_argument(
        "--pipeline", default=None,
        help="evaluate this VideoPredictionPipeline folder (e.g. <output_dir>/video-prior/pipeline of an earlier run) "
        "instead of training one; --resolution and --context_frames follow it",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100 steps each: a smoke test, not figures")
    parser.add_argument(
        "--num_threads", type=int, default=1,
        help="torch threads; on a machine shared with other work more threads wait on each other (default 1)",
    )
    args = parser.parse_args()
    if args.quick:
        args.train_episodes, args.heldout_episodes, args.vqvae_steps, args.prior_steps = 16, 8, 100, 100
    return args


def psnr(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """PSNR in dB of frames in [0, 1], one per (trajectory, frame) over the pixels: (..., H, W, C) -> (...)."""
    mse = ((prediction - truth) ** 2).mean(axis=(-3, -2, -1))
    return 10 * np.log10(1 / np.maximum(mse, 1e-10))


def train_models(args, output_dir: Path) -> Path:
    """Render the training trajectories, train the VQ-VAE and the video prior; returns the pipeline folder."""
    started = time.perf_counter()
    train = render_trajectories(args.train_episodes, args.train_steps_per_episode, args.resolution, seed=args.seed)
    validation = render_trajectories(8, args.context_frames + PREDICTED_FRAMES, args.resolution, seed=args.seed + 1)
    trajectories = output_dir / "trajectories"
    DatasetDict(train=train, validation=validation).save_to_disk(trajectories)
    frames, _ = flatten_frames(train, "frames")
    DatasetDict(train=frames).save_to_disk(output_dir / "frames")
    print(f"rendered {len(frames)} training frames in {time.perf_counter() - started:.0f} s")

    started = time.perf_counter()
    vqvae_recipe.train_vqvae(vqvae_recipe.parse_args([
        "--dataset_name", str(output_dir / "frames"), "--resolution", str(args.resolution),
        "--config_overrides", "hidden_channels=64", "residual_channels=32", "num_residual_blocks=1", "num_embeddings=128",
        "embedding_dim=32",
        "--max_train_steps", str(args.vqvae_steps), "--train_batch_size", "32", "--learning_rate", "1e-3",
        "--checkpointing_steps", str(10 * args.vqvae_steps), "--validation_steps", str(10 * args.vqvae_steps),
        "--report_to", "none", "--output_dir", str(output_dir / "vqvae"), "--seed", str(args.seed),
    ]))
    print(f"trained the VQ-VAE for {args.vqvae_steps} steps in {time.perf_counter() - started:.0f} s")

    started = time.perf_counter()
    video_prior_recipe.train_video_prior(video_prior_recipe.parse_args([
        "--vqvae", str(output_dir / "vqvae"), "--dataset_name", str(trajectories),
        "--context_frames", str(args.context_frames), "--hidden_channels", "32", "--num_layers", "5",
        "--skip_channels", "64", "--context_embedding_dim", "8", "--conditioning_channels", "48", "--conditioning_layers", "3",
        "--max_train_steps", str(args.prior_steps), "--train_batch_size", "32", "--learning_rate", "1e-3",
        "--checkpointing_steps", str(10 * args.prior_steps), "--validation_steps", str(10 * args.prior_steps),
        "--report_to", "none", "--output_dir", str(output_dir / "video-prior"), "--seed", str(args.seed),
    ]))
    print(f"trained the video prior for {args.prior_steps} steps in {time.perf_counter() - started:.0f} s")
    return output_dir / "video-prior" / "pipeline"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.num_threads)
    print(describe_machine())
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pipeline = VideoPredictionPipeline.from_pretrained(args.pipeline or train_models(args, output_dir))
    args.resolution = pipeline.vqvae.config.sample_size
    pipeline.set_progress_bar_config(disable=True)
    context_frames = pipeline.video_prior.config.context_frames

    # Held-out episodes: another seed than the training and validation episodes.
    length = context_frames + PREDICTED_FRAMES
    heldout = render_trajectories(
        args.heldout_episodes, args.heldout_offset + length, args.resolution, seed=args.seed + 1000
    )
    window = slice(args.heldout_offset, args.heldout_offset + length)
    frames = [list(episode)[window] for episode in heldout["frames"]]
    episode_actions = torch.tensor(heldout["actions"])[:, window]
    actions = episode_actions[:, context_frames - 1 : context_frames - 1 + PREDICTED_FRAMES]
    context = [episode[:context_frames] for episode in frames]
    truth = np.stack([[np.asarray(frame, dtype=np.float32) / 255 for frame in episode[context_frames:]] for episode in frames])
    # Each trajectory gets the actions of the next one (a cyclic shift: never its own, same action statistics).
    shuffled = actions.roll(1, dims=0)

    def predict(taken, temperature):
        return pipeline(
            frames=context, actions=taken, temperature=temperature, output_type="np",
            generator=torch.Generator().manual_seed(args.seed),
        )

    last_frame = np.repeat(np.stack([np.asarray(episode[-1], dtype=np.float32) / 255 for episode in context])[:, None],
                           PREDICTED_FRAMES, axis=1)
    true_codes = pipeline.encode_frames(frames)  # (B, context + 10, h, w)
    reconstruction = pipeline.decode_codes(true_codes[:, context_frames:], output_type="np")
    baselines = {
        "copy last context frame": psnr(last_frame, truth),
        "VQ-VAE reconstruction (ceiling)": psnr(reconstruction, truth),
    }
    bits_true = pipeline.video_prior.bits_per_code(true_codes, actions)
    bits_shuffled = pipeline.video_prior.bits_per_code(true_codes, shuffled)
    # The exploring policy repeats an action for several steps, so the context frames mostly show the action
    # already; where the action changes, only the action says what comes next.
    switches = actions != episode_actions[:, context_frames - 2 : context_frames - 2 + PREDICTED_FRAMES]
    switch_bits = (bits_true[switches].mean().item(), bits_shuffled[switches].mean().item())
    bits_true, bits_shuffled = bits_true.mean().item(), bits_shuffled.mean().item()

    batch, grid = len(frames), pipeline.video_prior.config.grid_height
    print(f"\n{batch} held-out trajectories of {args.resolution}x{args.resolution} frames, {context_frames} frames of "
          f"context, {PREDICTED_FRAMES} predicted; codes {grid}x{grid}, K={pipeline.vqvae.config.num_embeddings}")
    summary = {"psnr_per_frame": {}, "generation_seconds": {}, "batch": batch}
    for temperature in args.temperature:
        started = time.perf_counter()
        predicted = predict(actions, temperature)
        generation_s = time.perf_counter() - started
        rows = {
            "prediction (true actions)": psnr(predicted.frames, truth),
            "prediction (shuffled actions)": psnr(predict(shuffled, temperature).frames, truth),
            **baselines,
        }
        print(f"\nPSNR (dB) per predicted frame, mean over the trajectories, sampling temperature {temperature}")
        print(f"{'':34s}" + "".join(f"{index:>6d}" for index in range(1, PREDICTED_FRAMES + 1)) + "    mean")
        for name, values in rows.items():
            per_frame = values.mean(axis=0)
            print(f"{name:34s}" + "".join(f"{value:6.2f}" for value in per_frame) + f"  {per_frame.mean():6.2f}")
        model = rows["prediction (true actions)"].mean()
        print(f"prediction - copy last frame: {model - rows['copy last context frame'].mean():+.2f} dB; "
              f"prediction - shuffled actions: {model - rows['prediction (shuffled actions)'].mean():+.2f} dB")
        print(f"time to generate {PREDICTED_FRAMES} frames for a batch of {batch}: {generation_s:.2f} s "
              f"({generation_s / (batch * PREDICTED_FRAMES) * 1000:.1f} ms per frame)")
        summary["psnr_per_frame"][str(temperature)] = {name: values.mean(axis=0).round(3).tolist() for name, values in rows.items()}
        summary["generation_seconds"][str(temperature)] = generation_s
        if temperature == args.temperature[0]:
            for index in range(min(4, batch)):
                strip = prediction_strip(
                    context[index], frames[index][context_frames:], pipeline.decode_codes(predicted.codes[index : index + 1])[0]
                )
                strip.save(output_dir / f"strip_{index}.png")
    print(f"\nbits per code of the true future codes: {bits_true:.3f} with the true actions, {bits_shuffled:.3f} with "
          f"shuffled actions (log2 K = {math.log2(pipeline.vqvae.config.num_embeddings):.0f}); "
          f"ratio shuffled / true {bits_shuffled / bits_true:.3f}")
    print(f"  on the {int(switches.sum())} of {switches.numel()} predicted frames whose action differs from the one "
          f"before: {switch_bits[0]:.3f} true, {switch_bits[1]:.3f} shuffled")
    summary["bits_per_code"] = {"true_actions": bits_true, "shuffled_actions": bits_shuffled}
    summary["bits_per_code_at_action_switches"] = {"true_actions": switch_bits[0], "shuffled_actions": switch_bits[1]}
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"strips (context / truth / prediction) and summary.json in {output_dir}")


if __name__ == "__main__":
    main()

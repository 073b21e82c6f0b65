"""How much of its codebook a VQ-VAE uses: hf-vqvae's quantizer against plain VQ.

All models are the package's `VQVAEModel` with K = 512 codes of D = 64, slimmed (small hidden
sizes) so that training takes minutes on a CPU, trained with Adam on 32x32 crops of the photos
bundled with scikit-image, and evaluated on held-out crops:

- default config: the EMA codebook (appendix A.1), k-means initialisation, dead-code restarts
  below `VQVAEConfig`'s threshold (1 assignment per batch);
- balanced restarts: the same with the restart threshold at half the mean usage (batch latents
  / K), so restarts also even out how often codes are used;
- plain VQ: the codebook term of eq. 3 (update_rule="loss"), random initialisation, no restarts.

Reported on the held-out crops: distinct codes used (fraction of K), perplexity of the code
histogram over the whole set (exp of its entropy; K if every code were used equally) and
reconstruction MSE (pixels in [-1, 1]). Targets: >= 95% of the codes and a perplexity >= 0.8 K.

    python benchmarks/codebook_usage.py [--steps 3000] [--batch_size 64] [--threads N]
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from hf_vqvae import VQVAEConfig, VQVAEModel
from machine import describe_machine


IMAGES = (
    "astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
    "camera", "coins", "brick", "grass", "gravel", "moon",
)
CROP = 32
# Crops whose pixels barely vary (the retina's black surround, the Hubble field's empty sky) are
# dropped: hundreds of copies of one latent would say nothing about how a codebook is used.
MIN_CROP_STD = 4.0 / 255
SLIM = dict(hidden_channels=64, residual_channels=32, num_residual_blocks=2, sample_size=CROP, num_embeddings=512, embedding_dim=64)


def configs() -> dict[str, dict]:
    """Name -> VQVAEConfig overrides; plain VQ last."""
    default = VQVAEConfig(**SLIM)
    return {
        f"default config (EMA, k-means, restarts < {default.dead_code_threshold:g} x mean usage)": {},
        "plain VQ (loss, random init, no restarts)": dict(update_rule="loss", kmeans_init=False, dead_code_threshold=0.0),
    }


def photo_crops() -> torch.Tensor:
    """Non-overlapping 32x32 crops of the bundled photos, (n, 3, 32, 32) in [-1, 1]."""
    import skimage.data

    crops = []
    for name in IMAGES:
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        image = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1).float() / 127.5 - 1
        rows, columns = image.shape[1] // CROP, image.shape[2] // CROP
        tiles = image[:, : rows * CROP, : columns * CROP].unfold(1, CROP, CROP).unfold(2, CROP, CROP)
        crops.append(tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, CROP, CROP))
    crops = torch.cat(crops)
    # Pixels in [-1, 1]: half the standard deviation is the standard deviation in [0, 1] units.
    return crops[crops.std(dim=(1, 2, 3)) / 2 >= MIN_CROP_STD]


def split(crops: torch.Tensor, eval_fraction: float = 0.15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(len(crops), generator=torch.Generator().manual_seed(seed))
    held_out = int(len(crops) * eval_fraction)
    return crops[order[held_out:]], crops[order[:held_out]]


def train(config: VQVAEConfig, crops: torch.Tensor, steps: int, batch_size: int, learning_rate: float) -> VQVAEModel:
    torch.manual_seed(0)
    model = VQVAEModel(config).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        batch = crops[torch.randint(len(crops), (batch_size,), generator=generator)]
        loss = model(batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def evaluate(model: VQVAEModel, crops: torch.Tensor) -> dict[str, float]:
    counts = torch.zeros(model.config.num_embeddings)
    squared_error = 0.0
    for batch in crops.split(256):
        out = model(batch)
        counts += torch.bincount(out.indices.flatten(), minlength=model.config.num_embeddings)
        squared_error += F.mse_loss(out.reconstruction, batch, reduction="sum").item()
    probabilities = counts / counts.sum()
    entropy = -(probabilities[counts > 0] * probabilities[counts > 0].log()).sum()
    return {
        "codes used": float((counts > 0).float().mean()),
        "perplexity": float(entropy.exp()),
        "mse": squared_error / crops.numel(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(describe_machine())
    train_crops, eval_crops = split(photo_crops())
    print(
        f"data: {len(train_crops)} training and {len(eval_crops)} held-out {CROP}x{CROP} crops of "
        f"{len(IMAGES)} scikit-image photos; {args.steps} Adam steps (lr {args.learning_rate}) of {args.batch_size} crops"
    )
    results = {}
    for name, overrides in configs().items():
        config = VQVAEConfig(**SLIM, **overrides)
        start = time.perf_counter()
        model = train(config, train_crops, args.steps, args.batch_size, args.learning_rate)
        results[name] = evaluate(model, eval_crops)
        results[name]["minutes"] = (time.perf_counter() - start) / 60

    num_codes = SLIM["num_embeddings"]
    print(f"\nheld-out set, K = {num_codes}:")
    width = max(len(name) for name in results)
    print(f"  {'configuration':{width}s} {'codes used':>11s} {'perplexity':>16s} {'MSE':>8s} {'train min':>9s}")
    for name, result in results.items():
        print(
            f"  {name:{width}s} {result['codes used']:10.1%} {result['perplexity']:7.1f} ({result['perplexity'] / num_codes:.2f} K)"
            f" {result['mse']:8.4f} {result['minutes']:9.1f}"
        )
    *quantizers, (_, plain) = results.items()
    for name, result in quantizers:
        met = result["codes used"] >= 0.95 and result["perplexity"] >= 0.8 * num_codes
        print(
            f"  {name}: {result['codes used'] / plain['codes used']:.1f}x plain VQ's codes, "
            f"{result['perplexity'] / plain['perplexity']:.1f}x its perplexity; target {'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()

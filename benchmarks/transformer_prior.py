"""The transformer prior (`TransformerPriorModel`, a Llama through `generate()`) against the gated PixelCNN prior at
about the same parameter count: bits per code on held-out codes after the same training, sampling time per code, and
the effect of classifier-free guidance.

1. Bits per code. Both priors train for `--steps` Adam updates (batch 32, learning rate 1e-3, the same seed) on each
   of two code distributions whose entropy is known, and are scored on held-out grids; the true entropy (the floor)
   and log2 K (a uniform guess) are the controls printed beside them:
   - `noisy-sum`: each code is (left + above) mod K, replaced by a uniform code 10% of the time (local structure, what
     a PixelCNN's receptive field covers);
   - `noisy-template`: one fixed random grid per class (4 classes), each code replaced by a uniform one 70% of the
     time; the class label is given (the class is in every code: a dependence across the whole grid).
2. Sampling time per code of the default-sized priors of `scripts/train_prior.py` (K = 512, 8x8 grids, 15 classes: the
   PixelCNN's 1.56M parameters, the Llama's 1.41M), at batch 1, 4 and 16, by process CPU time at one thread (best of
   `--repeats`): the PixelCNN's cached sampler (compiled step where a C++ compiler exists), the transformer through
   `generate()` with its KV cache, and without the cache (the whole sequence per position).
3. Guidance. The transformer trained on `noisy-template` (label dropout 0.1) samples 256 grids per guidance scale;
   each grid is scored by its agreement with the template of its requested class (share of codes equal to it: the
   data have 0.7/K + 0.3 = 0.34 at K = 16, a grid unrelated to the class 1/K = 0.06) and by the true posterior's
   class (class match). Guidance 0 (the unconditional model) is the control.

    python benchmarks/transformer_prior.py [--steps 400] [--repeats 2] [--skip_speed]
"""

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe_machine  # noqa: E402

from hf_vqvae import PixelCNNPriorConfig, PixelCNNPriorModel, TransformerPriorConfig, TransformerPriorModel  # noqa: E402


K, SIZE, CLASSES = 16, 8, 4
SUM_NOISE, TEMPLATE_NOISE = 0.1, 0.7

# About 0.16M parameters each at K = 16 (printed by the run).
SMALL_PIXELCNN = dict(hidden_channels=24, num_layers=6, kernel_size=5, skip_channels=48)
SMALL_LLAMA = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4)
# scripts/train_prior.py's defaults.
DEFAULT_PIXELCNN = dict(hidden_channels=64, num_layers=8, kernel_size=5, skip_channels=128)
DEFAULT_LLAMA = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=6, num_attention_heads=4)


def noisy_code_entropy(noise: float) -> float:
    """Entropy in bits of a code that is a known value, replaced by a uniform code with probability `noise`."""
    kept, other = 1 - noise + noise / K, noise / K
    return -(kept * math.log2(kept) + (K - 1) * other * math.log2(other))


def noisy_sum(count: int, generator: torch.Generator) -> tuple[torch.Tensor, None, float]:
    grids = torch.zeros(count, SIZE, SIZE, dtype=torch.long)
    for row in range(SIZE):
        for column in range(SIZE):
            left = grids[:, row, column - 1] if column else 0
            above = grids[:, row - 1, column] if row else 0
            uniform = torch.randint(K, (count,), generator=generator)
            keep = torch.rand(count, generator=generator) >= SUM_NOISE
            grids[:, row, column] = uniform if row == column == 0 else torch.where(keep, (left + above) % K, uniform)
    entropy = (math.log2(K) + (SIZE * SIZE - 1) * noisy_code_entropy(SUM_NOISE)) / (SIZE * SIZE)
    return grids, None, entropy


TEMPLATES = torch.randint(K, (CLASSES, SIZE, SIZE), generator=torch.Generator().manual_seed(1234))


def noisy_template(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    labels = torch.randint(CLASSES, (count,), generator=generator)
    uniform = torch.randint(K, (count, SIZE, SIZE), generator=generator)
    keep = torch.rand(count, SIZE, SIZE, generator=generator) >= TEMPLATE_NOISE
    return torch.where(keep, TEMPLATES[labels], uniform), labels, noisy_code_entropy(TEMPLATE_NOISE)


def template_posterior_class(grids: torch.Tensor) -> torch.Tensor:
    """The most likely class of each grid under the true distribution: the template it agrees with most."""
    return (grids[:, None] == TEMPLATES[None]).flatten(2).sum(2).argmax(1)


def build(kind: str, num_classes: int, architecture: dict, num_embeddings: int = K, size: int = SIZE, dropout=0.1):
    torch.manual_seed(0)
    grid = dict(num_embeddings=num_embeddings, grid_height=size, grid_width=size, num_classes=num_classes)
    if kind == "pixelcnn":
        return PixelCNNPriorModel(PixelCNNPriorConfig(**grid, **architecture))
    return TransformerPriorModel(TransformerPriorConfig(**grid, class_dropout_prob=dropout, decoder_config=architecture))


def parameters(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def train(model, grids, labels, steps: int):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = torch.randint(len(grids), (32,), generator=generator)
        loss = model(grids[batch], None if labels is None else labels[batch], labels=grids[batch]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def held_out_bits(model, grids, labels) -> float:
    return model.bits_per_code(grids, labels).mean().item()


def cpu_seconds(function, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip_speed", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(describe_machine())
    print(f"load average before: {os.getloadavg()}")

    print(f"\n1. held-out bits per code after {args.steps} updates of 32 grids (K = {K}, {SIZE}x{SIZE})")
    trained = {}
    for name, make in (("noisy-sum", noisy_sum), ("noisy-template", noisy_template)):
        train_grids, train_labels, entropy = make(4096, torch.Generator().manual_seed(0))
        test_grids, test_labels, _ = make(512, torch.Generator().manual_seed(1))
        num_classes = 0 if train_labels is None else CLASSES
        row = [f"{name:15s} true entropy {entropy:.3f}, uniform {math.log2(K):.3f}"]
        for kind, architecture in (("pixelcnn", SMALL_PIXELCNN), ("transformer", SMALL_LLAMA)):
            model = build(kind, num_classes, architecture)
            started = time.process_time()
            trained[name, kind] = train(model, train_grids, train_labels, args.steps)
            seconds = time.process_time() - started
            bits = held_out_bits(model, test_grids, test_labels)
            row.append(f"{kind} ({parameters(model) / 1e6:.3f}M params, {seconds:.0f} s CPU): {bits:.3f} "
                       f"(+{bits - entropy:.3f} above the floor)")
        print("\n  ".join(row))

    print("\n3. guidance: the transformer trained on noisy-template, 256 samples per scale (64 per class)")
    model = trained["noisy-template", "transformer"]
    requested = torch.arange(CLASSES).repeat_interleave(64)
    data, data_labels, _ = noisy_template(256, torch.Generator().manual_seed(2))
    agreement = (data == TEMPLATES[data_labels]).float().mean().item()
    match = (template_posterior_class(data) == data_labels).float().mean().item()
    print(f"  held-out data: template agreement {agreement:.3f}, class match {match:.3f} (chance {1 / CLASSES:.3f})")
    for scale in (0.0, 1.0, 2.0, 4.0):
        grids = model.sample(class_labels=requested, guidance_scale=scale, generator=torch.Generator().manual_seed(3))
        agreement = (grids == TEMPLATES[requested]).float().mean().item()
        match = (template_posterior_class(grids) == requested).float().mean().item()
        print(f"  guidance {scale:.0f}: template agreement {agreement:.3f}, class match {match:.3f}")

    if not args.skip_speed:
        print("\n2. sampling: CPU ms per code, one thread, default-sized priors (K = 512, 8x8, 15 classes)")
        pixelcnn = build("pixelcnn", 15, DEFAULT_PIXELCNN, num_embeddings=512).eval()
        transformer = build("transformer", 15, DEFAULT_LLAMA, num_embeddings=512).eval()
        print(f"  parameters: pixelcnn {parameters(pixelcnn) / 1e6:.2f}M, transformer {parameters(transformer) / 1e6:.2f}M")
        pixelcnn.sample(class_labels=[0])  # builds the compiled step once
        for batch_size in (1, 4, 16):
            labels = torch.arange(batch_size) % 15
            codes = batch_size * SIZE * SIZE
            times = {
                "pixelcnn cached": cpu_seconds(lambda: pixelcnn.sample(class_labels=labels), args.repeats),
                "transformer generate (KV cache)": cpu_seconds(lambda: transformer.sample(class_labels=labels), args.repeats),
                "transformer generate (no cache)": cpu_seconds(
                    lambda: transformer.sample(class_labels=labels, use_cache=False), args.repeats
                ),
            }
            base = times["pixelcnn cached"]
            print(f"  batch {batch_size:2d}: " + ", ".join(
                f"{name} {1000 * seconds / codes:.3f} ({seconds / base:.1f}x)" for name, seconds in times.items()
            ))
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

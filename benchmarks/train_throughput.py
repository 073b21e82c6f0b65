"""Training throughput of the paper's CIFAR-10 VQ-VAE, the quantizer's share of a step, and whether
the data loader keeps up.

- step: images per second of one training step (forward, backward, Adam) of
  `VQVAEConfig.from_preset("cifar10")` (256 hidden channels, K = 512, D = 64) on 32x32 images;
- quantizer: the time spent in `VectorQuantizer.forward` during those steps (forward hooks), and
  the quantizer's forward + backward timed alone on latents of the same shape, each as a share of
  the step (target: under 10 %);
- loader: images per second of the training script's data loader on the default data set (crops
  of scikit-image's photographs, random crops and flips, the image processor), against the step's.

    python benchmarks/train_throughput.py [--batch_size 32] [--steps 10] [--num_workers 0] [--num_threads N]

Each figure is the median over the timed steps; run it on an idle machine for steadier numbers.
"""

import argparse
import statistics
import time
from types import SimpleNamespace

import torch

from hf_vqvae import VQVAEConfig, VQVAEImageProcessor, VQVAEModel
from hf_vqvae.data.images import ImageTransform, load_image_datasets, training_dataloader


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (after 3 warm-up steps)")
    parser.add_argument("--loader_batches", type=int, default=50, help="timed loader batches")
    parser.add_argument("--num_workers", type=int, default=0, help="loader workers (the training default is 0)")
    parser.add_argument("--num_threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    return parser.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class QuantizerTimer:
    """Wall time spent inside the quantizer's forward, through forward pre- and post-hooks."""

    def __init__(self, quantizer: torch.nn.Module, device: torch.device):
        self.device = device
        self.elapsed = 0.0
        quantizer.register_forward_pre_hook(self._start)
        quantizer.register_forward_hook(self._stop)

    def _start(self, module, inputs):
        synchronize(self.device)
        self._started = time.perf_counter()

    def _stop(self, module, inputs, output):
        synchronize(self.device)
        self.elapsed += time.perf_counter() - self._started


def time_training_steps(model, images, steps: int, device) -> tuple[list[float], list[float]]:
    """Seconds per training step, and seconds inside the quantizer's forward per step."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    timer = QuantizerTimer(model.quantizer, device)
    step_times, quantizer_times = [], []
    for step in range(steps + 3):
        timer.elapsed = 0.0
        synchronize(device)
        started = time.perf_counter()
        model(images).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step >= 3:  # the first steps run k-means and select kernels
            step_times.append(time.perf_counter() - started)
            quantizer_times.append(timer.elapsed)
    return step_times, quantizer_times


def time_quantizer_alone(model, images, steps: int, device) -> list[float]:
    """Seconds for the quantizer's forward and backward on the encoder's output shape."""
    with torch.no_grad():
        latents = model.encoder(images)
    times = []
    for step in range(steps + 3):
        inputs = latents.clone().requires_grad_(True)
        synchronize(device)
        started = time.perf_counter()
        output = model.quantizer(inputs)
        (output.quantized.sum() + output.loss).backward()
        synchronize(device)
        if step >= 3:
            times.append(time.perf_counter() - started)
    return times


def time_loader(batch_size: int, num_workers: int, batches: int) -> float:
    """Images per second of the training script's loader over the default data set."""
    args = SimpleNamespace(
        dataset_name=None, train_data_dir=None, streaming=False, resolution=32, validation_fraction=0.05,
        validation_split=None, image_column="image", label_column=None, max_train_samples=None, seed=0,
        cache_dir=None, max_validation_samples=256,
    )
    datasets = load_image_datasets(args)
    transform = ImageTransform(VQVAEImageProcessor(resolution=32), center_crop=False, random_flip=True)
    loader = training_dataloader(datasets, transform, batch_size=batch_size, seed=0, num_workers=num_workers)
    images, started = 0, None
    while images < batches * batch_size:
        for index, batch in enumerate(loader):
            if started is None and index == 1:  # past the workers' start-up
                started = time.perf_counter()
            elif started is not None:
                images += len(batch["pixel_values"])
            if images >= batches * batch_size:
                break
    return images / (time.perf_counter() - started)


def main() -> None:
    args = parse_args()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = VQVAEModel(VQVAEConfig.from_preset("cifar10")).to(device).train()
    images = (torch.rand(args.batch_size, 3, 32, 32) * 2 - 1).to(device)

    step_times, quantizer_times = time_training_steps(model, images, args.steps, device)
    step = statistics.median(step_times)
    in_step = statistics.median(quantizer_times)
    alone = statistics.median(time_quantizer_alone(model, images, args.steps, device))
    step_rate = args.batch_size / step
    loader_rate = time_loader(args.batch_size, args.num_workers, args.loader_batches)

    print(f"device: {device} ({torch.get_num_threads()} threads), batch {args.batch_size}, cifar10 preset")
    print(f"training step:        {step * 1e3:8.1f} ms   {step_rate:8.1f} images/s")
    print(f"quantizer in step:    {in_step * 1e3:8.1f} ms   {in_step / step:8.1%} of the step (forward, hooks)")
    print(f"quantizer fwd + bwd:  {alone * 1e3:8.1f} ms   {alone / step:8.1%} of the step (timed alone)")
    print(f"data loader:          {loader_rate:8.1f} images/s = {loader_rate / step_rate:.1f}x the step "
          f"({args.num_workers} workers)")


if __name__ == "__main__":
    main()

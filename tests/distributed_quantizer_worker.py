"""Two-process quantizer run for tests/test_quantizer_distributed.py.

Launched as `accelerate launch --multi_gpu --num_processes 2 distributed_quantizer_worker.py OUT_DIR`
(gloo on CPU). Each rank trains on its share of fixed global batches and saves what it saw and
ended with to OUT_DIR/rank{r}.safetensors; the test imports the same functions to train one
process on the whole batches and compares. With a third argument, `mismatched`, rank 1 leaves out
the quantizer's all-reduces: a broken run, which must fail at the collective timeout.

Two runs:
- "plain": the quantizer alone (EMA, k-means init, restarts), with uneven and empty shares;
- "ddp": a 1x1-conv encoder + quantizer wrapped by `accelerator.prepare` (DistributedDataParallel,
  which broadcasts rank 0's buffers before every forward) and trained with SGD on even shares.
"""

import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hf_vqvae.quantization import distributed, vector_quantizer
from hf_vqvae.quantization.vector_quantizer import VectorQuantizer


EMBEDDING_DIM = 8
NUM_CODES = 32
GRID_SIDE = 4
# Images of (rank 0, rank 1) per step; concatenated, they are the single process's batch. Rank 1
# is empty at step 6 and the shares are uneven at step 7.
PLAIN_SHARES = [(4, 4)] * 6 + [(8, 0), (5, 3)]
DDP_SHARES = [(4, 4)] * 6
# Rank 0's latents come from cluster centres of their own, so at every step some codes see data
# on one rank only; from this step on rank 0's centres move away, the codes that served them stop
# being used, fall below the usage threshold and are restarted.
SHIFT_STEP = 3
# How long a collective waits for the other rank (torch's default: 30 minutes): a collective that one
# rank leaves out fails the run within a minute instead of hanging the tests.
COLLECTIVE_TIMEOUT = timedelta(seconds=30)


def make_quantizer() -> VectorQuantizer:
    # decay 0.5: usage averages fall below the bound within a few steps; every global batch has
    # 8 x 16 latents, a mean usage of 4 per code, so the bound is 1 assignment per batch.
    return VectorQuantizer(NUM_CODES, EMBEDDING_DIM, decay=0.5, kmeans_init=True, kmeans_iters=5, dead_code_threshold=0.25)


def _cluster_latents(centres: torch.Tensor, images: int, generator: torch.Generator) -> torch.Tensor:
    rows = images * GRID_SIDE * GRID_SIDE
    picks = torch.randint(len(centres), (rows,), generator=generator)
    latents = centres[picks] + 0.3 * torch.randn(rows, EMBEDDING_DIM, generator=generator)
    return latents.view(images, GRID_SIDE, GRID_SIDE, EMBEDDING_DIM).permute(0, 3, 1, 2).contiguous()


def global_batch(step: int, first_share: int, second_share: int) -> torch.Tensor:
    """The whole batch of `step`, (images, D, side, side): rank 0's share first."""
    centres = 5 * torch.randn(3, 4, EMBEDDING_DIM, generator=torch.Generator().manual_seed(1234))
    centres += torch.tensor([0.0, 20.0, -20.0])[:, None, None]
    generator = torch.Generator().manual_seed(step)
    first = _cluster_latents(centres[2] if step >= SHIFT_STEP else centres[0], first_share, generator)
    return torch.cat([first, _cluster_latents(centres[1], second_share, generator)])


def batches(shares: list[tuple[int, int]], rank: int | None = None) -> list[torch.Tensor]:
    """Each step's whole batch (rank None) or the share of `rank`."""
    result = []
    for step, (first_share, second_share) in enumerate(shares):
        batch = global_batch(step, first_share, second_share)
        result.append(batch if rank is None else batch.split([first_share, second_share])[rank])
    return result


def kmeans_codebook(batch: torch.Tensor) -> torch.Tensor:
    """The codebook k-means initialisation builds from `batch` (and the other ranks' shares)."""
    quantizer = make_quantizer().train()
    quantizer._kmeans_initialize(batch.flatten(2))
    return quantizer.embedding.detach().clone()


def plain_run(step_batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    quantizer = make_quantizer().train()
    records = {}
    for step, batch in enumerate(step_batches):
        out = quantizer(batch)
        records[f"indices/{step}"] = out.indices
        records[f"perplexity/{step}"] = out.perplexity
        records[f"codebook/{step}"] = quantizer.embedding.detach().clone()
        records[f"cluster_size/{step}"] = quantizer.cluster_size.clone()
    records.update({f"state/{name}": tensor for name, tensor in quantizer.state_dict().items()})
    return records


class TinyAutoencoder(nn.Module):
    """A 1x1-conv encoder and a quantizer (by default `make_quantizer()`'s) on (B, D, side, side) images."""

    def __init__(self, quantizer: nn.Module | None = None, embedding_dim: int = EMBEDDING_DIM):
        super().__init__()
        self.encoder = nn.Conv2d(embedding_dim, embedding_dim, kernel_size=1)
        self.quantizer = make_quantizer() if quantizer is None else quantizer

    def forward(self, images: torch.Tensor):
        out = self.quantizer(self.encoder(images))
        return out.loss + F.mse_loss(out.quantized, images), out.indices


def ddp_run(
    step_batches: list[torch.Tensor], prepare=lambda model, optimizer: (model, optimizer), make_model=TinyAutoencoder,
    learning_rate: float = 1e-3,
) -> dict[str, torch.Tensor]:
    """SGD on `make_model()` (a TinyAutoencoder); `prepare` wraps it (accelerator.prepare in the worker).

    Every rank's loss is the mean over an equal share, so DDP's averaged gradient is the
    gradient of the mean over the whole batch: one process on the whole batch takes the same steps.
    """
    torch.manual_seed(0)
    model = make_model().train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    model, optimizer = prepare(model, optimizer)
    records = {}
    for step, batch in enumerate(step_batches):
        loss, indices = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        records[f"indices/{step}"] = indices
    unwrapped = getattr(model, "module", model)
    records.update({f"state/{name}": tensor.detach() for name, tensor in unwrapped.state_dict().items()})
    return records


def main(out_dir: str, mismatched: bool = False) -> None:
    from accelerate import Accelerator, InitProcessGroupKwargs
    from safetensors.torch import save_file

    # cpu=True: without it a machine with no GPU falls back to a single process.
    accelerator = Accelerator(cpu=True, kwargs_handlers=[InitProcessGroupKwargs(timeout=COLLECTIVE_TIMEOUT)])
    assert accelerator.num_processes == 2, accelerator.num_processes
    torch.set_num_threads(1)
    rank = accelerator.process_index
    if mismatched and rank == 1:
        # Every all-reduce of the quantizer: its own and those of the shared helpers (`take_global_rows`).
        vector_quantizer.all_reduce_sum = distributed.all_reduce_sum = lambda *tensors: list(tensors)
    records = {"kmeans/codebook": kmeans_codebook(batches(PLAIN_SHARES, rank)[0])}
    records.update({f"plain/{key}": value for key, value in plain_run(batches(PLAIN_SHARES, rank)).items()})
    records.update({f"ddp/{key}": value for key, value in ddp_run(batches(DDP_SHARES, rank), accelerator.prepare).items()})
    save_file({key: value.contiguous() for key, value in records.items()}, Path(out_dir) / f"rank{rank}.safetensors")
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1], mismatched=sys.argv[2:] == ["mismatched"])

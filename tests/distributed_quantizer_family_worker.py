"""Two-process runs of the quantizer family for tests/test_quantizer_family_distributed.py.

Launched as `accelerate launch --multi_gpu --num_processes 2 distributed_quantizer_family_worker.py OUT_DIR` (gloo on
CPU). Each rank trains on its share of fixed global batches and saves what it saw and ended with to
OUT_DIR/rank{r}.safetensors; the test imports the same functions to train one process on the whole batches.

- "plain/<variant>": the quantizer alone, uneven shares and a step where rank 1 has nothing: residual VQ (EMA,
  k-means, restarts and quantizer dropout in every stage) and the usage counts of FSQ, LFQ and SimVQ;
- "ddp/<variant>": a 1x1-conv encoder + quantizer wrapped by `accelerator.prepare` (DistributedDataParallel) and
  trained with SGD on even shares, for every variant (LFQ's batch entropy spans both processes).
"""

import sys
from pathlib import Path

import torch

from distributed_quantizer_worker import TinyAutoencoder
from distributed_quantizer_worker import ddp_run as ddp_run_of_worker
from hf_vqvae import VQVAEConfig
from hf_vqvae.quantization.factory import build_quantizer


EMBEDDING_DIM = 4
GRID_SIDE = 4
PLAIN_SHARES = [(4, 4)] * 4 + [(6, 0), (5, 3)]
DDP_SHARES = [(4, 4)] * 4

# decay 0.5 and a restart bound of a quarter of the mean usage: restarts happen within the few steps.
VQ_STATE = dict(decay=0.5, kmeans_init=True, kmeans_iters=3, dead_code_threshold=0.25)
VARIANTS = {
    "vq_options": dict(num_embeddings=16, rotation_trick=True, cosine_similarity=True, codebook_dim=3, **VQ_STATE),
    "residual_vq": dict(quantizer_type="residual_vq", num_embeddings=16, num_quantizers=3, quantizer_dropout=0.5, **VQ_STATE),
    "simvq": dict(quantizer_type="simvq", num_embeddings=16, rotation_trick=True),
    "fsq": dict(quantizer_type="fsq", fsq_levels=[4, 3, 3], num_embeddings=36),
    "lfq": dict(quantizer_type="lfq", num_embeddings=16, lfq_temperature=0.5),
}
PLAIN_VARIANTS = ("residual_vq", "simvq", "fsq", "lfq")


def make_quantizer(name: str):
    torch.manual_seed(0)
    return build_quantizer(VQVAEConfig(embedding_dim=EMBEDDING_DIM, **VARIANTS[name]))


def global_batch(step: int, first_share: int, second_share: int) -> torch.Tensor:
    """The whole batch of `step`, (images, D, side, side): rank 0's share first; the two shares come from clusters
    far apart, so codes serve one rank only."""
    generator = torch.Generator().manual_seed(step)
    centres = 3 * torch.randn(2, 5, EMBEDDING_DIM, generator=torch.Generator().manual_seed(99))
    centres[1] += 8
    parts = []
    for rank, images in enumerate((first_share, second_share)):
        rows = images * GRID_SIDE * GRID_SIDE
        picks = torch.randint(5, (rows,), generator=generator)
        latents = centres[rank][picks] + 0.5 * torch.randn(rows, EMBEDDING_DIM, generator=generator)
        parts.append(latents.view(images, GRID_SIDE, GRID_SIDE, EMBEDDING_DIM).permute(0, 3, 1, 2))
    return torch.cat(parts).contiguous()


def batches(shares: list[tuple[int, int]], rank: int | None = None) -> list[torch.Tensor]:
    """Each step's whole batch (rank None) or the share of `rank`."""
    result = []
    for step, (first_share, second_share) in enumerate(shares):
        batch = global_batch(step, first_share, second_share)
        result.append(batch if rank is None else batch.split([first_share, second_share])[rank])
    return result


def plain_run(name: str, step_batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    quantizer = make_quantizer(name).train()
    records = {}
    for step, batch in enumerate(step_batches):
        out = quantizer(batch)
        records[f"indices/{step}"] = out.indices
        records[f"perplexity/{step}"] = out.perplexity
        records[f"code_counts/{step}"] = out.code_counts
    records.update({f"state/{key}": tensor.detach() for key, tensor in quantizer.state_dict().items()})
    return records


def ddp_run(name: str, step_batches: list[torch.Tensor], prepare=lambda model, optimizer: (model, optimizer)) -> dict[str, torch.Tensor]:
    """SGD on a 1x1-conv encoder and the variant's quantizer (`distributed_quantizer_worker.ddp_run`)."""
    return ddp_run_of_worker(step_batches, prepare, make_model=lambda: tiny_autoencoder(name), learning_rate=0.05)


def tiny_autoencoder(name: str) -> TinyAutoencoder:
    return TinyAutoencoder(make_quantizer(name), embedding_dim=EMBEDDING_DIM)


def main(out_dir: str) -> None:
    from accelerate import Accelerator
    from safetensors.torch import save_file

    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2, accelerator.num_processes
    torch.set_num_threads(1)
    rank = accelerator.process_index
    records = {}
    for name in PLAIN_VARIANTS:
        records.update({f"plain/{name}/{key}": value for key, value in plain_run(name, batches(PLAIN_SHARES, rank)).items()})
    for name in VARIANTS:
        run = ddp_run(name, batches(DDP_SHARES, rank), accelerator.prepare)
        records.update({f"ddp/{name}/{key}": value for key, value in run.items()})
    save_file({key: value.contiguous() for key, value in records.items()}, Path(out_dir) / f"rank{rank}.safetensors")
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1])

"""Collectives every quantizer with state shares, written so that N processes end a step with the state one process
fed the N batches concatenated in rank order would hold.

Without an initialised process group (one process) each helper is the identity.
"""

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def all_reduce_sum(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Sums of `tensors` over all processes, in one collective (they are packed into one buffer)."""
    if world_size() == 1:
        return list(tensors)
    packed = torch.cat([tensor.reshape(-1) for tensor in tensors])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return [part.view_as(tensor) for part, tensor in zip(packed.split([t.numel() for t in tensors]), tensors)]


def broadcast_from_first_rank(tensor: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def batch_size_slots(local_rows: int, device: torch.device) -> torch.Tensor:
    """A (world size,) vector holding this process's row count in its own slot: summed over
    processes it holds every process's count."""
    sizes = torch.zeros(world_size(), device=device)
    sizes[rank()] = local_rows
    return sizes


def global_row_range(batch_sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows in the global batch, global index of this process's first row) from the summed
    `batch_size_slots`. The global batch is the processes' batches concatenated in rank order:
    the batch a single process would see."""
    batch_sizes = batch_sizes.long()
    return batch_sizes.sum(), batch_sizes[: rank()].sum()


def hashed_integers(seed: torch.Tensor, count: int, stream_length=None, offset=0) -> torch.Tensor:
    """Pseudo-random integers in [0, 2**32): positions `offset .. offset + count - 1` of the stream of
    `stream_length` (default `count`) numbers drawn for `seed` (a 0-dim tensor, a step counter say).

    A pure function of the seed and the positions, computed on the seed's device with integer arithmetic
    (Mueller's 32-bit mixing function): every process draws the same numbers (a process holding rows 8..15 of a
    global batch draws, with offset 8, what one process holding all rows draws for them), a run resumed from a
    checkpoint draws them again, and nothing waits for the host. Products stay below 2**59, so int64 never
    overflows.
    """
    mask = 0xFFFFFFFF
    stream_length = count if stream_length is None else stream_length
    state = (seed * stream_length + offset + torch.arange(count, device=seed.device)) & mask
    state = (((state >> 16) ^ state) * 0x45D9F3B) & mask
    state = (((state >> 16) ^ state) * 0x45D9F3B) & mask
    return (state >> 16) ^ state


def take_global_rows(latents: torch.Tensor, global_rows: torch.Tensor, first_row) -> torch.Tensor:
    """Rows `global_rows` of the global batch, (len(global_rows), D), identical on every process.

    `latents` is this process's (B, D, L) block, rows ordered (batch, position) and starting at
    global row `first_row`. Each process fills the rows it holds, zeros elsewhere, and the
    all-reduce assembles them: a sum with zeros is exact, so no rank differs in a single bit.
    """
    batch, dim, length = latents.shape
    local = global_rows - first_row
    held = (local >= 0) & (local < batch * length)
    if batch * length == 0:
        rows = latents.new_zeros(global_rows.shape[0], dim)
    else:
        local = local.clamp(0, batch * length - 1)
        rows = torch.where(held[:, None], latents[local // length, :, local % length], 0.0)
    if world_size() > 1:
        (rows,) = all_reduce_sum(rows)
    return rows

"""Two processes (accelerate launch, gloo on CPU) against one process fed the concatenated batches.

The worker (distributed_quantizer_worker.py) trains on each rank's share of fixed batches; these
tests run the same functions on the whole batches in this process. Restart and k-means draws are
defined on the global batch, so everything is comparable: counts, restarts and k-means exactly,
EMA sums up to the order of floating-point additions.
"""

import re
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

import distributed_quantizer_worker as worker
from launching import accelerate_launch, run


WORKER = Path(__file__).with_name("distributed_quantizer_worker.py")
# Summation order differs between the all-reduced per-rank sums and one process's sums.
SUM_ORDER_TOLERANCE = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict[str, torch.Tensor]]:
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    out_dir = tmp_path_factory.mktemp("distributed-quantizer")
    run([*accelerate_launch(num_processes=2), str(WORKER), str(out_dir)], timeout=600)
    return [load_file(out_dir / f"rank{rank}.safetensors") for rank in range(2)]


def restarted_codes(codebook: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Codes equal to one of the batch's latents: restarted at this step (an EMA average of
    several latents never lands exactly on one of them)."""
    rows = batch.movedim(1, -1).reshape(-1, batch.shape[1])
    return (codebook[:, None, :] == rows[None]).all(dim=-1).any(dim=1)


def test_ranks_end_every_step_with_identical_state(ranks):
    shared = [key for key in ranks[0] if "/indices/" not in key]
    assert any(key.startswith("ddp/state/quantizer.") for key in shared)
    for key in shared:
        assert torch.equal(ranks[0][key], ranks[1][key]), key


def test_kmeans_init_pools_every_process(ranks):
    whole_batch = worker.batches(worker.PLAIN_SHARES)[0]
    # The same rows, the same seeds: the pooled k-means is one process's k-means on the union.
    assert torch.equal(ranks[0]["kmeans/codebook"], worker.kmeans_codebook(whole_batch))
    # Codes cover rank 1's clusters too, which are 20 units away from rank 0's.
    rank_one_rows = worker.batches(worker.PLAIN_SHARES, rank=1)[0].movedim(1, -1).reshape(-1, worker.EMBEDDING_DIM)
    assert torch.cdist(rank_one_rows, ranks[0]["kmeans/codebook"]).min(dim=1).values.max() < 3


def test_ema_steps_equal_one_process_on_concatenated_batches(ranks):
    single = worker.plain_run(worker.batches(worker.PLAIN_SHARES))
    for step in range(len(worker.PLAIN_SHARES)):
        both = torch.cat([ranks[0][f"plain/indices/{step}"], ranks[1][f"plain/indices/{step}"]])
        assert torch.equal(both, single[f"indices/{step}"]), step
        # Counts are integers: their EMA is exact whatever the order of the sums.
        assert torch.equal(ranks[0][f"plain/cluster_size/{step}"], single[f"cluster_size/{step}"]), step
        torch.testing.assert_close(ranks[0][f"plain/codebook/{step}"], single[f"codebook/{step}"], **SUM_ORDER_TOLERANCE)
        torch.testing.assert_close(ranks[0][f"plain/perplexity/{step}"], single[f"perplexity/{step}"])
    for name in ("codes_used", "restart_step", "initialized"):
        assert torch.equal(ranks[0][f"plain/state/{name}"], single[f"state/{name}"]), name
    for name in ("embedding", "embed_sum"):
        torch.testing.assert_close(ranks[0][f"plain/state/{name}"], single[f"state/{name}"], **SUM_ORDER_TOLERANCE)


def test_restarts_pick_the_same_latents_as_one_process_and_reset_ema_state(ranks):
    single = worker.plain_run(worker.batches(worker.PLAIN_SHARES))
    settings = worker.make_quantizer()

    def bound(step: int) -> torch.Tensor:
        """A restarted code's fresh usage: the threshold's share of the mean of the step's usage averages."""
        counts = torch.bincount(single[f"indices/{step}"].flatten(), minlength=worker.NUM_CODES).float()
        return settings.dead_code_threshold * torch.lerp(single[f"cluster_size/{step - 1}"], counts, 1 - settings.decay).mean()

    restart_steps = []
    for step, batch in enumerate(worker.batches(worker.PLAIN_SHARES)):
        codebook = ranks[0][f"plain/codebook/{step}"]
        restarted = restarted_codes(codebook, batch)
        assert torch.equal(restarted, restarted_codes(single[f"codebook/{step}"], batch)), step
        assert torch.equal(codebook[restarted], single[f"codebook/{step}"][restarted]), step
        if restarted.any():
            usage = ranks[0][f"plain/cluster_size/{step}"][restarted]
            torch.testing.assert_close(usage, bound(step).expand_as(usage), msg=f"step {step}")
            restart_steps.append(step)
    # After rank 0's data moves (and at the step where rank 1 has no data at all).
    assert {worker.SHIFT_STEP + 1, 6} <= set(restart_steps), restart_steps
    last_step_restarts = restarted_codes(ranks[0]["plain/state/embedding"], worker.batches(worker.PLAIN_SHARES)[-1])
    assert last_step_restarts.any()
    state = {name: ranks[0][f"plain/state/{name}"][last_step_restarts] for name in ("embed_sum", "embedding")}
    torch.testing.assert_close(state["embed_sum"], bound(len(worker.PLAIN_SHARES) - 1) * state["embedding"])


def test_ddp_training_equals_one_process_on_concatenated_batches(ranks):
    single = worker.ddp_run(worker.batches(worker.DDP_SHARES))
    for step in range(len(worker.DDP_SHARES)):
        both = torch.cat([ranks[0][f"ddp/indices/{step}"], ranks[1][f"ddp/indices/{step}"]])
        assert torch.equal(both, single[f"indices/{step}"]), step
    for key, expected in single.items():
        if key.startswith("state/"):
            torch.testing.assert_close(ranks[0][f"ddp/{key}"], expected, **SUM_ORDER_TOLERANCE, msg=key)


def test_a_collective_one_process_leaves_out_fails_the_run_at_the_collective_timeout(tmp_path):
    """A broken collective (rank 1 skips the quantizer's all-reduces, so rank 0 waits in one that never completes)
    must fail the run when the worker's collective timeout runs out, not hang it (torch's own timeout is 30 minutes;
    `run` fails the test and kills every process of the run if it has not ended well before that)."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    timeout_ms = int(worker.COLLECTIVE_TIMEOUT.total_seconds() * 1000)
    result = run([*accelerate_launch(num_processes=2), str(WORKER), str(tmp_path), "mismatched"], timeout=240,
                 expect_success=False)  # fmt: skip
    assert result.returncode != 0
    assert re.search(rf"Timed out waiting {timeout_ms}ms", result.stderr), result.stderr[-4000:]
    assert not list(tmp_path.glob("rank*.safetensors"))

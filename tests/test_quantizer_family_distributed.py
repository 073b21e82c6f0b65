"""The quantizer family under two processes (accelerate launch, gloo on CPU) against one process fed the concatenated
batches: residual VQ's stages (EMA, k-means, restarts) with quantizer dropout drawn per example of the global batch,
usage counts of every variant, and DDP training of every variant, LFQ's batch entropy included.
"""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

import distributed_quantizer_family_worker as worker
from launching import accelerate_launch, run


WORKER = Path(__file__).with_name("distributed_quantizer_family_worker.py")
# State that counts (usage, steps, flags) is exact whatever the order of the sums.
COUNTING_STATE = ("codes_used", "cluster_size", "initialized", "restart_step", "dropout_step")


def assert_equal_up_to_sum_order(got: torch.Tensor, expected: torch.Tensor, key: str) -> None:
    """Counting state exactly; sums (EMA sums, codebooks, trained weights) up to the order of floating-point additions,
    which differs between all-reduced per-rank sums and one process's sums: relative to the tensor's scale, as a sum
    of large terms can round small elements away."""
    if key.split(".")[-1] in COUNTING_STATE:
        assert torch.equal(got, expected), key
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, float(expected.abs().max())), msg=key)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict[str, torch.Tensor]]:
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    out_dir = tmp_path_factory.mktemp("distributed-quantizer-family")
    run([*accelerate_launch(num_processes=2), str(WORKER), str(out_dir)], timeout=600)
    return [load_file(out_dir / f"rank{rank}.safetensors") for rank in range(2)]


def test_ranks_end_every_run_with_identical_state(ranks):
    shared = [key for key in ranks[0] if "/indices/" not in key]
    assert {key.split("/")[1] for key in shared if key.startswith("ddp/")} == set(worker.VARIANTS)
    for key in shared:
        assert torch.equal(ranks[0][key], ranks[1][key]), key


@pytest.mark.parametrize("name", worker.PLAIN_VARIANTS)
def test_each_step_equals_one_process_on_the_concatenated_batches(ranks, name):
    single = worker.plain_run(name, worker.batches(worker.PLAIN_SHARES))
    for step in range(len(worker.PLAIN_SHARES)):
        both = torch.cat([ranks[0][f"plain/{name}/indices/{step}"], ranks[1][f"plain/{name}/indices/{step}"]])
        assert torch.equal(both, single[f"indices/{step}"]), step
        assert torch.equal(ranks[0][f"plain/{name}/code_counts/{step}"], single[f"code_counts/{step}"]), step
        torch.testing.assert_close(ranks[0][f"plain/{name}/perplexity/{step}"], single[f"perplexity/{step}"])
    for key, expected in single.items():
        if key.startswith("state/"):
            assert_equal_up_to_sum_order(ranks[0][f"plain/{name}/{key}"], expected, key)


def test_residual_stages_drop_restart_and_initialise_on_the_global_batch(ranks):
    name = "residual_vq"
    single = worker.plain_run(name, worker.batches(worker.PLAIN_SHARES))
    indices = [single[f"indices/{step}"] for step in range(len(worker.PLAIN_SHARES))]
    # Dropout happened, and each rank's examples drew their own numbers of stages (not a per-process copy).
    assert any((step_indices == -1).any() for step_indices in indices)
    first_step = indices[0][:, :, 0, 0] >= 0
    assert not torch.equal(first_step[:4], first_step[4:])
    # Every stage ran k-means, and some stage restarted codes (its restart counter moved on every step).
    for stage in range(3):
        assert bool(ranks[0][f"plain/{name}/state/stages.{stage}.initialized"])
        assert int(ranks[0][f"plain/{name}/state/stages.{stage}.restart_step"]) == len(worker.PLAIN_SHARES)
    assert int(ranks[0][f"plain/{name}/state/dropout_step"]) == len(worker.PLAIN_SHARES)


@pytest.mark.parametrize("name", list(worker.VARIANTS))
def test_ddp_training_equals_one_process_on_the_concatenated_batches(ranks, name):
    single = worker.ddp_run(name, worker.batches(worker.DDP_SHARES))
    for step in range(len(worker.DDP_SHARES)):
        both = torch.cat([ranks[0][f"ddp/{name}/indices/{step}"], ranks[1][f"ddp/{name}/indices/{step}"]])
        assert torch.equal(both, single[f"indices/{step}"]), step
    for key, expected in single.items():
        if key.startswith("state/"):
            assert_equal_up_to_sum_order(ranks[0][f"ddp/{name}/{key}"], expected, key)
    initial = worker.tiny_autoencoder(name).state_dict()
    moved = sum(not torch.equal(initial[key], single[f"state/{key}"]) for key in initial)
    assert moved >= 2  # the encoder (and the quantizer's learned or EMA state) trained

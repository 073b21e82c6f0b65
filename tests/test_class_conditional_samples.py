"""A class-conditional prior's samples follow their class's data: after brief training on synthetic classes with
distinct code distributions, each class's sampled codes have that class's unigram distribution (KL measured as
`benchmarks/class_conditional_samples.py` measures it on the real data), with every sampler."""

import sys
from pathlib import Path

import pytest
import torch

from hf_vqvae import PixelCNNPriorConfig, PixelCNNPriorModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from class_conditional_samples import code_counts, unigram_kl  # noqa: E402


# Each class draws its codes from its own distribution over K = 8 codes; they overlap, so that only the label (for
# the first code) and the codes seen so far tell the classes apart.
CLASS_CODE_PROBABILITIES = torch.tensor([
    [0.40, 0.25, 0.15, 0.08, 0.05, 0.04, 0.02, 0.01],
    [0.01, 0.02, 0.04, 0.05, 0.08, 0.15, 0.25, 0.40],
    [0.02, 0.08, 0.20, 0.20, 0.20, 0.20, 0.08, 0.02],
])  # fmt: skip
GRID = 4
COPY_LEFT = 0.5  # a code repeats its left neighbour this often, else it is drawn afresh: every position keeps its class's unigram


def class_grids(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One (GRID, GRID) grid per label: codes of the label's distribution, runs of repeats along each row."""
    fresh = torch.multinomial(CLASS_CODE_PROBABILITIES[labels], GRID * GRID, replacement=True, generator=generator)
    grids = fresh.view(-1, GRID, GRID)
    repeat = torch.rand(len(labels), GRID, GRID, generator=generator) < COPY_LEFT
    for column in range(1, GRID):
        grids[:, :, column] = torch.where(repeat[:, :, column], grids[:, :, column - 1], grids[:, :, column])
    return grids


@pytest.fixture(scope="module")
def trained_prior() -> PixelCNNPriorModel:
    torch.manual_seed(0)
    num_classes, num_codes = CLASS_CODE_PROBABILITIES.shape
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(
        num_embeddings=num_codes, grid_height=GRID, grid_width=GRID, hidden_channels=32, num_layers=3, kernel_size=3,
        skip_channels=32, num_classes=num_classes,
    ))  # fmt: skip
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        labels = torch.randint(num_classes, (64,), generator=generator)
        codes = class_grids(labels, generator)
        loss = prior(codes, labels, labels=codes).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return prior.eval()


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "plain"])
def test_each_class_samples_its_own_code_distribution(trained_prior, use_cache, sampler_step):
    if not use_cache and sampler_step == "fused":
        pytest.skip("the plain sampler has no compiled step")
    num_classes, num_codes = CLASS_CODE_PROBABILITIES.shape
    per_class = 300
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    sampled = trained_prior.sample(len(labels), labels, generator=torch.Generator().manual_seed(1), use_cache=use_cache)
    data = class_grids(labels, torch.Generator().manual_seed(2))

    data_counts = [code_counts(data[labels == label], num_codes) for label in range(num_classes)]
    sample_counts = [code_counts(sampled[labels == label], num_codes) for label in range(num_classes)]
    for label in range(num_classes):
        own = unigram_kl(data_counts[label], sample_counts[label])
        # Samples that ignored the label would follow the mixture of the classes: about 0.3 nats away or more.
        assert own < 0.03, f"class {label}: KL(data || samples) = {own:.3f} nats"
        for other in range(num_classes):
            if other != label:
                assert unigram_kl(data_counts[label], sample_counts[other]) > 10 * own, (label, other)

"""The machinery every data set of training examples shares, whatever its rows hold (images, audio clips): seeded
examples (`SeededExamples`) and their stream (`StreamingExamples`), the files that do not decode (`UnreadableCounter`,
`drop_unreadable`), the epoch's shuffle (`EpochShuffleSampler`) and the batching of examples (`collate_examples`).

Every random choice of the training data (the shuffle of an epoch, the crop and flip of an example) is drawn from a
generator seeded by (seed, epoch, position), never from a global or per-worker random state. That makes the batches
independent of `--dataloader_num_workers` and lets a resumed run skip the batches it has already seen and go on with
exactly the ones it would have met.
"""

import logging

import numpy as np
import torch
from datasets import Dataset, IterableDataset


logger = logging.getLogger(__name__)


class TooManyUnreadableImagesError(RuntimeError):
    """More than the allowed share of a data set's files (images, or audio clips) cannot be decoded."""


class UnreadableCounter:
    """Counts the files of a data set that fail to decode (`kind`: images, audio clips), warns about the first few, and
    raises `TooManyUnreadableImagesError` once more than `max_fraction` of at least `min_seen` fail; the message points
    at the column flag (`column_flag`)."""

    max_warnings = 10

    def __init__(self, max_fraction: float, kind: str, column_flag: str, min_seen: int = 100):
        self.max_fraction = max_fraction
        self.min_seen = min_seen
        self.kind = kind
        self.column_flag = column_flag
        self.seen = 0
        self.unreadable = 0

    def record(self, error: Exception | None) -> None:
        self.seen += 1
        if error is None:
            return
        self.unreadable += 1
        if self.unreadable <= self.max_warnings:
            logger.warning("skipping an unreadable %s (%s so far): %s", self.kind, self.unreadable, error)
        self.check(final=False)

    def check(self, final: bool = True) -> None:
        if self.seen and (final or self.seen >= self.min_seen) and self.unreadable > self.max_fraction * self.seen:
            raise TooManyUnreadableImagesError(
                f"{self.unreadable} of {self.seen} {self.kind}s could not be decoded, more than the allowed "
                f"share {self.max_fraction:g} (--max_unreadable_fraction); is {self.column_flag} right, is the data intact?"
            )


def drop_unreadable(dataset: Dataset, column: str, decode, unreadable_error: type[Exception], counter: UnreadableCounter) -> Dataset:
    """The rows of `dataset` whose `column` decodes (`decode` raises `unreadable_error` otherwise); warns with the
    count of those skipped and raises `TooManyUnreadableImagesError` when `counter` allows fewer. Images and speech
    check their data sets here."""

    def readable(values):
        flags = []
        for value in values:
            try:
                decode(value)
                flags.append(True)
            except unreadable_error as error:
                logger.warning("skipping an unreadable %s: %s", counter.kind, error)
                flags.append(False)
        return flags

    kept = dataset.filter(readable, input_columns=[column], batched=True, desc=f"checking {counter.kind}s")
    counter.seen, counter.unreadable = len(dataset), len(dataset) - len(kept)
    if counter.unreadable:
        logger.warning("skipped %s unreadable %ss of %s", counter.unreadable, counter.kind, counter.seen)
    counter.check()
    return kept


def example_rng(seed: int, *position: int) -> np.random.Generator:
    """The generator of one example's augmentations, a pure function of its position."""
    return np.random.default_rng([seed, *position])


class SeededExamples(torch.utils.data.Dataset):
    """A map-style data set of training examples: row `index` decoded (`decode`, which raises `unreadable_error`)
    and made an example (`example`) with the random choices (crop, flip) drawn from (seed, epoch, index). Call
    `set_epoch` before each epoch (`DataLoaderShard.set_epoch` does). Images and speech say only how a row decodes
    and becomes an example; `StreamingExamples` streams the same examples."""

    unreadable_error: type[Exception]

    def __init__(self, dataset: Dataset | IterableDataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        row = self.dataset[int(index)]
        return self.example(self.decode(row), row, example_rng(self.seed, self.epoch, index))

    def unreadable_counter(self, max_fraction: float) -> UnreadableCounter:
        raise NotImplementedError

    def decode(self, row: dict):
        raise NotImplementedError

    def example(self, decoded, row: dict, rng: np.random.Generator) -> dict:
        raise NotImplementedError


class StreamingExamples(torch.utils.data.IterableDataset):
    """The examples of a `SeededExamples` over a streamed data set, skipping (and counting) rows that fail to
    decode; the random choices of each come from (seed, epoch, worker, position). `datasets` splits the stream's
    shards among the loader's workers by itself."""

    def __init__(self, examples: SeededExamples, max_unreadable_fraction: float = 0.01):
        self.examples = examples
        self.max_unreadable_fraction = max_unreadable_fraction

    def set_epoch(self, epoch: int) -> None:
        self.examples.set_epoch(epoch)
        self.examples.dataset.set_epoch(epoch)

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else 0
        examples = self.examples
        counter = examples.unreadable_counter(self.max_unreadable_fraction)
        for position, row in enumerate(examples.dataset):
            try:
                decoded = examples.decode(row)
            except examples.unreadable_error as error:
                counter.record(error)
                continue
            counter.record(None)
            yield examples.example(decoded, row, example_rng(examples.seed, examples.epoch, worker_id, position))
        counter.check()


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation of the indices drawn from (seed, epoch): the same on every process, in every
    run, and again after a resume."""

    def __init__(self, num_examples: int, seed: int):
        self.num_examples = num_examples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_examples

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.num_examples).tolist())


def collate_examples(examples: list[dict]) -> dict:
    """A batch of examples: their tensors stacked, their numbers (class labels, speaker ids) as one tensor."""
    return {
        key: torch.stack(values) if isinstance(values[0], torch.Tensor) else torch.tensor(values)
        for key, values in ((key, [example[key] for example in examples]) for key in examples[0])
    }

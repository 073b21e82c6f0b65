"""Loading a data set by name and choosing its training and validation splits, for every kind of data (images,
speech, codes, trajectories): a `save_to_disk` folder or a Hub data set, streamed or not."""

from pathlib import Path

from datasets import DatasetDict, IterableDataset, IterableDatasetDict, load_dataset, load_from_disk


# Shards of a local data set streamed with --streaming: enough to split among processes and workers.
STREAM_SHARDS = 8

VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "test")


def dataset_display_name(name_or_path: str) -> str:
    """How a model card and the logs name a data set: a Hub id as it is; a local folder by its name,
    marked local (so it is never mistaken for a Hub id, nor shows the machine's paths)."""
    local = Path(name_or_path)
    return f"{local.resolve().name} (local folder)" if local.exists() else name_or_path


def load_named_dataset(name: str, config_name: str | None = None, *, cache_dir: str | None = None, streaming: bool = False):
    """The splits of a local folder written by `save_to_disk` (a lone `Dataset` becomes the `train`
    split), else of a Hub data set."""
    local = Path(name)
    if local.is_dir() and ((local / "dataset_dict.json").exists() or (local / "state.json").exists()):
        loaded = load_from_disk(str(local))
        splits = loaded if isinstance(loaded, DatasetDict) else DatasetDict(train=loaded)
        if streaming:
            return IterableDatasetDict({split: data.to_iterable_dataset(num_shards=STREAM_SHARDS) for split, data in splits.items()})
        return splits
    return load_dataset(name, config_name, cache_dir=cache_dir, streaming=streaming)


def training_and_validation_splits(splits, args, name: str, seed: int = 0) -> tuple:
    """The training and validation splits that `args` (any data's argument group: `ImageDataArguments`,
    `SpeechDataArguments`, ...) ask for, from the splits of any data set (images, speech, codes, trajectories):
    --validation_split, else the first of `VALIDATION_SPLIT_NAMES` there is, else --validation_fraction of `train`
    held out (the first --max_validation_samples examples of a stream); `train` cut to --max_train_samples."""
    if "train" not in splits:
        raise ValueError(f"the data set {name!r} has no 'train' split; its splits are {sorted(splits)}")
    train = splits["train"]
    if args.validation_split and args.validation_split not in splits:
        raise ValueError(f"--validation_split {args.validation_split!r} not found; the splits are {sorted(splits)}")
    validation_split = args.validation_split or next((s for s in VALIDATION_SPLIT_NAMES if s in splits), None)

    if validation_split is not None:
        validation = splits[validation_split]
    elif isinstance(train, IterableDataset):
        validation = train.take(args.max_validation_samples)
        train = train.skip(args.max_validation_samples)
    else:
        held_out = train.train_test_split(test_size=args.validation_fraction, seed=seed)
        train, validation = held_out["train"], held_out["test"]

    if args.max_train_samples is not None:
        if isinstance(train, IterableDataset):
            train = train.take(args.max_train_samples)
        else:
            train = train.select(range(min(args.max_train_samples, len(train))))
    return train, validation

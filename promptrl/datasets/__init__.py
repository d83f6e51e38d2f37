"""Datasets: a registry of loaders returning train/test pools plus their data models.

    ds = promptrl.datasets.load("sentiment", seed=0)
    (x_train, y_train), (x_test, y_test) = ds.load_data()
    train, val, test = ds.splits(train_size=16, val_size=12, test_size=20, seed=0)

Validation examples always come from the train pool, so they never overlap the test split.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from promptrl.errors import UserError

_REGISTRY: dict[str, Callable[..., "Dataset"]] = {}


def register(name: str):
    def decorator(loader):
        _REGISTRY[name] = loader
        return loader

    return decorator


def available() -> list[str]:
    return sorted(_REGISTRY)


def load(name: str, **kwargs) -> "Dataset":
    if name not in _REGISTRY:
        raise UserError(f"unknown dataset '{name}'; available: {', '.join(available())}")
    return _REGISTRY[name](**kwargs)


@dataclass
class Split:
    x: list
    y: list

    def __len__(self) -> int:
        return len(self.x)

    def __iter__(self):  # (x, y) = split
        return iter((self.x, self.y))

    def __getitem__(self, i):  # split[0] is x, split[1] is y, like a (x, y) tuple
        return (self.x, self.y)[i]


def download(url: str, target: Path, hint: str) -> None:
    """Fetch `url` into `target` once (atomically); a failure is one error line ending with `hint`."""
    if target.exists():
        return
    try:
        import urllib.request  # only when downloading (it costs 40 ms of import)

        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
    except OSError as error:
        raise UserError(f"cannot download {url} ({error}); {hint}") from None
    from promptrl.io import atomic_write_bytes

    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)


def iter_jsonl(file, required, needed_by: str):
    """(line number, row) for each row of a JSONL file, with one-line errors for a missing
    file, a line that is not JSON, or a row without a `required` field."""
    file = Path(file)
    if not file.is_file():
        raise UserError(f"dataset file not found: {file}; check the dataset path")
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{file} line {number}: not valid JSON; each line must be one JSON object") from None
            missing = [k for k in required if k not in row]
            if missing:
                raise UserError(f"{file} line {number}: missing field '{missing[0]}' (needed by {needed_by}); "
                                "add it to every line or change the data model")
            yield number, row


def _key(x) -> str:
    return json.dumps(x.model_dump() if hasattr(x, "model_dump") else x, sort_keys=True)


@dataclass
class Dataset:
    name: str
    x_train: list
    y_train: list
    x_test: list
    y_test: list
    input_data_model: type
    output_data_model: type

    def __post_init__(self):
        shared = sorted(set(self.input_data_model.model_fields) & set(self.output_data_model.model_fields))
        if shared:
            raise UserError(f"dataset '{self.name}': field '{shared[0]}' is both an input and an output, so the "
                            "target would be shown to the model; remove it from the input data model")

    def load_data(self):
        """((x_train, y_train), (x_test, y_test)) as in Keras/Synalinks."""
        return (self.x_train, self.y_train), (self.x_test, self.y_test)

    def splits(self, train_size: int | None, val_size: int, test_size: int | None, seed: int | None = 0):
        """Disjoint (train, val, test) Splits. Sizes None mean "all that is left".

        Train and validation are sampled from the train pool after removing repeated inputs and any
        input that also appears in the test pool (duplicates across the canonical files would leak).
        """
        rng = random.Random(seed)
        test_idx = list(range(len(self.x_test)))
        rng.shuffle(test_idx)
        test_idx = test_idx[:test_size] if test_size is not None else test_idx
        # every test input is excluded from train/val, not only the sampled ones: a later
        # evaluation with a larger test_size must not meet a training example
        pool, seen = [], {_key(x) for x in self.x_test}
        for i in range(len(self.x_train)):  # drop test inputs and repeated inputs from the train pool
            key = _key(self.x_train[i])
            if key not in seen:
                seen.add(key)
                pool.append(i)
        rng.shuffle(pool)
        asked = f"train_size={train_size}, val_size={val_size}, test_size={test_size}"
        train_size = len(pool) - val_size if train_size is None else train_size
        wanted = train_size + val_size
        if min(train_size, val_size, test_size if test_size is not None else 0) < 0 or wanted > len(pool) \
                or (test_size or 0) > len(self.x_test):
            raise UserError(f"dataset '{self.name}' has {len(pool)} train-pool and {len(self.x_test)} test examples "
                            f"(after removing repeats and test inputs); asked for {asked} - lower the sizes")
        val_idx, train_idx = pool[:val_size], pool[val_size:wanted]

        def take(xs, ys, idx):
            return Split([xs[i] for i in idx], [ys[i] for i in idx])

        return (take(self.x_train, self.y_train, train_idx), take(self.x_train, self.y_train, val_idx),
                take(self.x_test, self.y_test, test_idx))


# Loaders register themselves on import.
from promptrl.datasets import bbh, gsm8k, jsonl, synthetic  # noqa: E402,F401

__all__ = ["Dataset", "Split", "available", "iter_jsonl", "load", "register"]

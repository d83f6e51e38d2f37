"""Datasets: a registry of loaders returning train/test pools plus their data models.

    ds = promptrl.datasets.load("sentiment", seed=0)
    (x_train, y_train), (x_test, y_test) = ds.load_data()
    train, val, test = ds.splits(train_size=16, val_size=12, test_size=20, seed=0)

Validation examples come from the train pool (or from a validation pool, when the dataset has one,
e.g. a `val_path` file), never from the test pool.
"""

from __future__ import annotations

import json
import os
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


def default_cache(name: str) -> Path:
    """Where a downloaded dataset is cached: `$PROMPTRL_CACHE/<name>` (default ~/.cache/promptrl/<name>), read
    at call time so PROMPTRL_CACHE set after import (tests, notebooks) is honoured."""
    return Path(os.environ.get("PROMPTRL_CACHE", Path.home() / ".cache" / "promptrl")) / name


def require_fields(where: str, row, required, needed_by: str, fix: str = "add it to every line or change the "
                   "data model") -> None:
    """One error line for a row (at `where`, e.g. "train.jsonl line 3") without a `required` field."""
    missing = [k for k in required if not isinstance(row, dict) or k not in row]
    if missing:
        raise UserError(f"{where}: missing field '{missing[0]}' (needed by {needed_by}); {fix}")


def iter_jsonl(file, required, needed_by: str, shape: str = "each line must be one JSON object"):
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
                raise UserError(f"{file} line {number}: not valid JSON; {shape}") from None
            require_fields(f"{file} line {number}", row, required, needed_by)
            yield number, row


def hold_out(count: int, test_pool, pool_seed, where: str) -> tuple[list[int], list[int]]:
    """(train indices, test indices) of `count` examples: a fixed shuffle by `pool_seed` (not the run's
    seed) puts `test_pool` of them - a share like 0.2 or a count like 50 - in the test pool, so every
    run and every later evaluation tests on the same held-out examples."""
    share = isinstance(test_pool, float) and 0 < test_pool < 1
    if share:
        size = min(max(round(count * test_pool), 1), count - 1)
    elif isinstance(test_pool, int) and not isinstance(test_pool, bool) and 0 < test_pool < count:
        size = test_pool
    else:
        size = 0
    if count == 0:
        raise UserError(f"{where} has no examples; add some")
    if count < 2:
        raise UserError(f"{where} has 1 example: too few to hold out a test pool; give a test file")
    if size < 1:
        raise UserError(f"{where} has {count} examples; dataset.test_pool={test_pool!r} must be a share between 0 "
                        f"and 1 (e.g. 0.2) or a count between 1 and {count - 1}, held out as the test pool; "
                        "or give a test file")
    order = list(range(count))
    random.Random(pool_seed).shuffle(order)
    return order[size:], order[:size]


# Config keys that say which data a loader reads (beyond its name) and how its rows become examples, and
# those of them naming files.
SOURCE_KEYS = ("task", "path", "subset", "revision", "train_path", "test_path", "val_path", "data_files", "data_dir",
               "train_split", "test_split", "val_split", "columns", "sep", "load_kwargs")
_FILE_KEYS = {"train_path", "test_path", "val_path", "data_files", "data_dir"}
_FOLDER_LOADERS = {"bbh", "gsm8k"}  # their `path` is a folder (or null: download) of the same canonical files
# The keys that pick which examples of the train data are held out as the test pool (see hold_out).
HOLD_OUT_KEYS = ("test_pool", "pool_seed")


def holds_out(config: dict) -> bool:
    """Whether a dataset config's test pool is held out of its train data by HOLD_OUT_KEYS (no test file or split):
    then another test_pool or pool_seed puts other examples, some of them trained on, in the test pool."""
    return "test_pool" in config and config.get("test_path") is None and config.get("test_split") is None


def adopt_split_keys(saved: dict, current: dict, given: set) -> dict:
    """The keys picking which examples a checkpoint is tested on, as `saved` (the dataset config it was trained
    on) has them where `current` (the one evaluating it) changes them, for the same data: HOLD_OUT_KEYS when
    both hold out a test pool, and `seed` of a generated dataset (`seed: ${seed}` follows the run's seed).
    A changed value the user gave on the command line (`given`: those dataset keys) is refused: that test
    split would hold examples the checkpoint was trained on."""
    if describe_source(saved) != describe_source(current):
        return {}
    keys = (*(HOLD_OUT_KEYS if holds_out(saved) and holds_out(current) else ()), "seed")
    changes = {k: saved[k] for k in keys if k in saved and k in current and saved[k] != current[k]}
    for key in changes:
        if key in given:
            raise UserError(f"dataset.{key}={current[key]!r} differs from the checkpoint's {saved[key]!r}: that test "
                            "split would hold examples it was trained on; leave dataset."
                            f"{key} out (or set it to {saved[key]!r}) to test on the examples it held out")
    return changes


def describe_source(config: dict) -> str:
    """Which data a dataset config reads, e.g. "csv train_path=reviews.csv": its loader name and the keys
    naming tasks, files, splits and how columns are read, file paths cut to their names (the same file
    reached from another working directory is the same data). `evaluate --checkpoint` compares the
    checkpoint's with the config's (and the examples' content_sha256, which tells files of one name apart)."""
    def short(value):
        if isinstance(value, str):
            return os.path.basename(os.path.normpath(value))
        if isinstance(value, (list, tuple)):
            return [short(v) for v in value]
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items()}
        return value

    def flow(value) -> str:  # as typed on the command line: {review: text, label: answer}
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(flow(v) for v in value) + "]"
        return repr(value) if isinstance(value, str) and value.strip() != value else str(value)  # a separator

    name = config.get("name")
    keys = [k for k in SOURCE_KEYS if config.get(k) is not None and not (k == "path" and name in _FOLDER_LOADERS)]
    return " ".join([str(name), *(f"{k}={flow(short(config[k]) if k in _FILE_KEYS else config[k])}" for k in keys)])


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
    x_val: list | None = None  # a validation pool of its own (e.g. a val_path file); None: val comes from train
    y_val: list | None = None
    size_hint: str = ""  # appended to a "lower the sizes" error, e.g. which key sizes the test pool

    def __post_init__(self):
        shared = sorted(set(self.input_data_model.model_fields) & set(self.output_data_model.model_fields))
        if shared:
            raise UserError(f"dataset '{self.name}': field '{shared[0]}' is both an input and an output, so the "
                            "target would be shown to the model; remove it from the input data model")

    def content_sha256(self) -> str:
        """A fingerprint of the examples (every pool, in order): a file edited, extended or replaced by
        another of the same name gives another one. A checkpoint saves it; evaluate compares."""
        import hashlib

        digest = hashlib.sha256()
        for pool in (self.x_train, self.y_train, self.x_test, self.y_test, self.x_val or [], self.y_val or []):
            digest.update(json.dumps([_key(item) for item in pool]).encode())
        return digest.hexdigest()

    def load_data(self):
        """((x_train, y_train), (x_test, y_test)) as in Keras/Synalinks."""
        return (self.x_train, self.y_train), (self.x_test, self.y_test)

    def splits(self, train_size: int | None, val_size: int | None, test_size: int | None, seed: int | None = 0):
        """Disjoint (train, val, test) Splits. train/test sizes None mean "all that is left"; val_size None
        means all of the validation pool if the dataset has one, else 0.

        Train and validation are sampled after removing repeated inputs and any input that also appears
        in the test pool (duplicates across the canonical files would leak); with a validation pool, its
        inputs are removed from the train pool too.
        """
        rng = random.Random(seed)
        test_idx = list(range(len(self.x_test)))
        rng.shuffle(test_idx)
        test_idx = test_idx[:test_size] if test_size is not None else test_idx
        # every test input is excluded from train/val, not only the sampled ones: a later
        # evaluation with a larger test_size must not meet a training example
        seen = {_key(x) for x in self.x_test}

        def unique(xs):  # indices of the inputs not seen yet (drops test inputs and repeats)
            kept = []
            for i, x in enumerate(xs):
                key = _key(x)
                if key not in seen:
                    seen.add(key)
                    kept.append(i)
            return kept

        val_pool = unique(self.x_val) if self.x_val is not None else None
        pool = unique(self.x_train)
        rng.shuffle(pool)  # the same draws as before validation pools existed: recorded splits stay
        asked = f"train_size={train_size}, val_size={val_size}, test_size={test_size}"
        if val_pool is not None:
            rng.shuffle(val_pool)
            val_size = len(val_pool) if val_size is None else val_size
            have = f"{len(pool)} train-pool, {len(val_pool)} validation and {len(self.x_test)} test examples"
            val_from, pool_left = val_pool, pool
        else:
            val_size = val_size or 0
            have = f"{len(pool)} train-pool and {len(self.x_test)} test examples"
            val_from, pool_left = pool, pool[val_size:]
        train_size = len(pool_left) if train_size is None else train_size
        if min(train_size, val_size, test_size if test_size is not None else 0) < 0 or val_size > len(val_from) \
                or train_size > len(pool_left) or (test_size or 0) > len(self.x_test):
            raise UserError(f"dataset '{self.name}' has {have} (after removing repeats and test inputs); asked for "
                            f"{asked} - lower the sizes{self.size_hint}")
        val_idx, train_idx = val_from[:val_size], pool_left[:train_size]

        def take(xs, ys, idx):
            return Split([xs[i] for i in idx], [ys[i] for i in idx])

        val_xs, val_ys = (self.x_val, self.y_val) if val_pool is not None else (self.x_train, self.y_train)
        return (take(self.x_train, self.y_train, train_idx), take(val_xs, val_ys, val_idx),
                take(self.x_test, self.y_test, test_idx))


# Loaders register themselves on import.
from promptrl.datasets import bbh, files, gsm8k, hf, synthetic  # noqa: E402,F401

__all__ = ["Dataset", "HOLD_OUT_KEYS", "Split", "adopt_split_keys", "available", "default_cache", "describe_source",
           "hold_out", "holds_out", "iter_jsonl", "load", "register", "require_fields"]

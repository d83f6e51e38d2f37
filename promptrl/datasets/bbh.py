"""BIG-Bench-Hard (suzgunmirac/BIG-Bench-Hard, MIT): 27 reasoning tasks, one `<task>.json` each,
`{"examples": [{"input": ..., "target": ...}]}`.

    promptrl train dataset=bbh dataset.task=hyperbaton

`path` is a folder of task files (default `../shared/data/bbh`; a relative path is looked up from
the working directory, then from the repository); `path: null` downloads the task's canonical
file once into `cache_dir`. Targets are kept verbatim ("(A)", "True", "Yes", "valid", ...).

A task file has no train/test split, so the loader makes one that never moves: a fixed shuffle
(`pool_seed`, not the run's seed) puts `test_pool` examples in the test pool and the rest in the
train pool. The run's seed then draws train/val from the train pool and orders the test split, so
a run with another seed or a smaller test_size never meets a training example in its test split.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from promptrl.data_model import data_model_from_spec
from promptrl.datasets import Dataset, default_cache, download, hold_out, register, require_fields
from promptrl.datasets.files import read_json
from promptrl.errors import UserError

SOURCE = "https://raw.githubusercontent.com/suzgunmirac/BIG-Bench-Hard/main/bbh/{task}.json"
REPO = Path(__file__).resolve().parents[2]  # a relative `path` is also looked up from here
_LETTER = re.compile(r"^\([A-Z]\)$")
_SHAPE = 'a BBH task file is {"examples": [{"input": ..., "target": ...}]}'


def _folder(path: str | None, cache_dir: str | None) -> Path:
    if path is None:
        return Path(cache_dir) if cache_dir else default_cache("bbh")
    folder = Path(path).expanduser()
    if not folder.is_absolute() and not folder.is_dir() and (REPO / folder).is_dir():
        return REPO / folder
    return folder


def _fetch(folder: Path, task: str) -> None:
    download(SOURCE.format(task=task), folder / f"{task}.json",
             "give a folder of BBH task files as dataset.path (e.g. ../shared/data/bbh)")


def available_tasks(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def read_task(file: Path) -> list[tuple[str, str]]:
    """(input, target) pairs of one task file (read as dataset=jsonl reads JSON), with one-line errors."""
    unit, examples = read_json(file)
    rows = []
    for number, example in examples:
        require_fields(f"{file} {unit} {number}", example, ("input", "target"), "dataset=bbh", fix=_SHAPE)
        rows.append((str(example["input"]), str(example["target"])))
    return rows


def answer_description(targets: list[str]) -> str:
    """What the answer field asks for, from the task's targets: an option letter, one of a few labels,
    or free text."""
    counts = Counter(targets)
    if sum(n for t, n in counts.items() if _LETTER.match(t)) >= 0.95 * len(targets):
        return "The answer: exactly one of the options, written as its letter in parentheses, e.g. (A)"
    if len(counts) <= 4:
        return "The answer: exactly one of " + ", ".join(sorted(counts))
    return "The answer, in the exact form the question asks for"


@register("bbh")
def load_bbh(task: str | None = None, path: str | None = None, cache_dir: str | None = None, test_pool: int = 100,
             pool_seed: int = 0, **_) -> Dataset:
    folder = _folder(path, cache_dir)
    if path is not None and not folder.is_dir():
        raise UserError(f"BBH: folder {folder} not found; dataset.path must be a folder of BBH task files "
                        "(<task>.json), or null to download the task")
    tasks = available_tasks(folder)
    if not task:
        raise UserError("BBH: no task given; set dataset.task=NAME"
                        + (f", one of: {', '.join(tasks)}" if tasks else ""))
    if path is None and "/" not in task and not task.startswith("."):
        _fetch(folder, task)
        tasks = available_tasks(folder)
    if task not in tasks:
        raise UserError(f"BBH: no task '{task}' in {folder}; available: {', '.join(tasks) or 'none'}")
    rows = read_task(folder / f"{task}.json")
    train_idx, test_idx = hold_out(len(rows), test_pool, pool_seed, f"BBH task '{task}'")
    test, train = [rows[i] for i in test_idx], [rows[i] for i in train_idx]
    # The answer's description (its options) comes from the train pool: no test label reaches a prompt.
    question = data_model_from_spec("BBHQuestion", {"question": {"type": "str", "description": "The task's question"}})
    answer = data_model_from_spec("BBHAnswer", {"answer": {"type": "str",
                                                           "description": answer_description([t for _, t in train])}})
    return Dataset(
        name="bbh",  # the config name: evaluate --checkpoint compares it with the one the checkpoint saved
        x_train=[question(question=q) for q, _ in train], y_train=[answer(answer=a) for _, a in train],
        x_test=[question(question=q) for q, _ in test], y_test=[answer(answer=a) for _, a in test],
        input_data_model=question, output_data_model=answer,
    )

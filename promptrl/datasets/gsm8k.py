"""GSM8K (openai/grade-school-math, MIT): grade-school math word problems.

`path` is a folder holding train.jsonl and test.jsonl; without it the canonical files are
downloaded once into `cache_dir`. The answer's last line `#### 1,234` becomes 1234.0.
"""

from __future__ import annotations

import os
from pathlib import Path

from promptrl.data_model import DataModel, Field
from promptrl.datasets import Dataset, download, iter_jsonl, register
from promptrl.errors import UserError

SOURCE = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{split}.jsonl"
DEFAULT_CACHE = Path(os.environ.get("PROMPTRL_CACHE", Path.home() / ".cache" / "promptrl")) / "gsm8k"


class MathQuestion(DataModel):
    question: str = Field(description="The math word problem")


class MathAnswer(DataModel):
    answer: float = Field(description="The numerical answer")


def parse_answer(text: str) -> float:
    """The number after the last `####`, thousands commas removed (a bare number is taken as is)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str) or "####" not in text:
        raise ValueError("no '#### <number>' line")
    return float(text.rsplit("####", 1)[1].strip().replace(",", "").rstrip("."))


def read_split(file: Path) -> tuple[list, list]:
    xs, ys = [], []
    for number, row in iter_jsonl(file, ("question", "answer"), "GSM8K"):
        try:
            answer = parse_answer(row["answer"])
        except ValueError:
            raise UserError(f"{file} line {number}: answer has no '#### <number>' line") from None
        xs.append(MathQuestion(question=row["question"]))
        ys.append(MathAnswer(answer=answer))
    return xs, ys


def _fetch(folder: Path) -> None:
    for split in ("train", "test"):
        download(SOURCE.format(split=split), folder / f"{split}.jsonl",
                 "give a folder with train.jsonl and test.jsonl as dataset.path")


@register("gsm8k")
def load_gsm8k(path: str | None = None, cache_dir: str | None = None, **_) -> Dataset:
    folder = Path(path) if path else Path(cache_dir) if cache_dir else DEFAULT_CACHE
    if path is None:
        _fetch(folder)
    for split in ("train", "test"):
        if not (folder / f"{split}.jsonl").is_file():
            raise UserError(f"GSM8K: {folder / f'{split}.jsonl'} not found; dataset.path must hold train.jsonl and test.jsonl")
    (x_train, y_train), (x_test, y_test) = read_split(folder / "train.jsonl"), read_split(folder / "test.jsonl")
    return Dataset("gsm8k", x_train, y_train, x_test, y_test, MathQuestion, MathAnswer)

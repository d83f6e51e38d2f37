"""GSM8K (openai/grade-school-math, MIT): grade-school math word problems.

Where the files come from, first match wins: `path` (a folder holding train.jsonl and test.jsonl),
`cache_dir`, `$PROMPTRL_DATA_DIR/gsm8k` (a local data folder, read as is), else the canonical files
downloaded once into `$PROMPTRL_CACHE/gsm8k` (default `~/.cache/promptrl/gsm8k`).
The answer's last line `#### 1,234` becomes 1234.0.

Synalinks' names work too: `load_data(path=None)` -> `((x_train, y_train), (x_test, y_test))`
with targets holding the reference reasoning (`thinking`) and the `answer`, and
`get_input_data_model()` / `get_output_data_model()`.
"""

from __future__ import annotations

import os
from pathlib import Path

from promptrl.data_model import DataModel, Field
from promptrl.datasets import default_cache as datasets_default_cache
from promptrl.datasets import Dataset, download, iter_jsonl, register
from promptrl.errors import UserError

SOURCE = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{split}.jsonl"
DATA_DIR_ENV = "PROMPTRL_DATA_DIR"


class MathQuestion(DataModel):
    question: str = Field(description="The math word problem")


class MathAnswer(DataModel):
    answer: float = Field(description="The numerical answer")


class NumericalAnswerWithThinking(DataModel):
    thinking: str = Field(description="Your step by step thinking")
    answer: float = Field(description="The numerical answer")


def get_input_data_model() -> type[DataModel]:
    """The GSM8K input data model (`question`), as `synalinks.datasets.gsm8k.get_input_data_model`."""
    return MathQuestion


def get_output_data_model() -> type[DataModel]:
    """The target of `load_data()`: `thinking` then `answer` (as Synalinks' GSM8K output)."""
    return NumericalAnswerWithThinking


def default_cache() -> Path:
    return datasets_default_cache("gsm8k")


def parse_answer(text: str) -> float:
    """The number after the last `####`, thousands commas removed (a bare number is taken as is)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str) or "####" not in text:
        raise ValueError("no '#### <number>' line")
    return float(text.rsplit("####", 1)[1].strip().replace(",", "").rstrip("."))


def read_split(file: Path, with_thinking: bool = False) -> tuple[list, list]:
    """(questions, targets) of one file; targets are MathAnswer, or NumericalAnswerWithThinking
    whose `thinking` is the text before `####` (with the dataset's `<<48/2=24>>` notes kept)."""
    xs, ys = [], []
    for number, row in iter_jsonl(file, ("question", "answer"), "GSM8K"):
        try:
            answer = parse_answer(row["answer"])
        except ValueError:
            raise UserError(f"{file} line {number}: answer has no '#### <number>' line") from None
        xs.append(MathQuestion(question=row["question"]))
        if with_thinking:
            thinking = row["answer"].rsplit("####", 1)[0].strip() if isinstance(row["answer"], str) else ""
            ys.append(NumericalAnswerWithThinking(thinking=thinking, answer=answer))
        else:
            ys.append(MathAnswer(answer=answer))
    return xs, ys


def data_folder(path: str | None = None, cache_dir: str | None = None) -> Path:
    """The folder holding train.jsonl and test.jsonl, downloading into the cache only when no local
    folder was named (`path` or $PROMPTRL_DATA_DIR)."""
    if path:
        folder, hint = Path(path).expanduser(), "dataset.path must hold train.jsonl and test.jsonl"
    elif not cache_dir and os.environ.get(DATA_DIR_ENV):
        folder = Path(os.environ[DATA_DIR_ENV]).expanduser() / "gsm8k"
        hint = f"${DATA_DIR_ENV}/gsm8k must hold train.jsonl and test.jsonl (or unset {DATA_DIR_ENV})"
    else:
        folder = Path(cache_dir) if cache_dir else default_cache()
        for split in ("train", "test"):
            download(SOURCE.format(split=split), folder / f"{split}.jsonl",
                     f"give a folder with train.jsonl and test.jsonl as dataset.path (or set {DATA_DIR_ENV} "
                     "to a folder holding gsm8k/)")
        hint = "delete the cache folder to download the files again"
    for split in ("train", "test"):
        if not (folder / f"{split}.jsonl").is_file():
            raise UserError(f"GSM8K: {folder / f'{split}.jsonl'} not found; {hint}")
    return folder


@register("gsm8k")
def load_gsm8k(path: str | None = None, cache_dir: str | None = None, **_) -> Dataset:
    folder = data_folder(path, cache_dir)
    (x_train, y_train), (x_test, y_test) = read_split(folder / "train.jsonl"), read_split(folder / "test.jsonl")
    return Dataset("gsm8k", x_train, y_train, x_test, y_test, MathQuestion, MathAnswer)


def load_data(path: str | None = None):
    """`((x_train, y_train), (x_test, y_test))` as `synalinks.datasets.gsm8k.load_data()`: lists of
    MathQuestion and NumericalAnswerWithThinking (reference reasoning + answer), the whole canonical
    splits (7473 train, 1319 test). Files as in the module docstring; offline, give `path` or set
    $PROMPTRL_DATA_DIR."""
    folder = data_folder(path)
    return (read_split(folder / "train.jsonl", with_thinking=True),
            read_split(folder / "test.jsonl", with_thinking=True))

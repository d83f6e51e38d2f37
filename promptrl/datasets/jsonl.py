"""Your own data: JSONL files whose rows hold the input and output fields of two data models."""

from __future__ import annotations

import json
from pathlib import Path

from promptrl.data_model import resolve_data_model
from promptrl.datasets import Dataset, register
from promptrl.errors import UserError


def _read(file: Path, input_model, output_model) -> tuple[list, list]:
    if not file.is_file():
        raise UserError(f"dataset file not found: {file}; fix dataset.train_path / dataset.test_path")
    xs, ys = [], []
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{file} line {number}: not valid JSON; each line must be one JSON object") from None
            for model in (input_model, output_model):
                missing = [k for k in model.model_fields if k not in row]
                if missing:
                    raise UserError(f"{file} line {number}: missing field '{missing[0]}' "
                                    f"(needed by data model {model.__name__}); add it or change the data model")
            try:
                xs.append(input_model(**{k: row[k] for k in input_model.model_fields}))
                ys.append(output_model(**{k: row[k] for k in output_model.model_fields}))
            except ValueError as error:
                raise UserError(f"{file} line {number}: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}") from None
    return xs, ys


@register("jsonl")
def load_jsonl(train_path: str, test_path: str, input_data_model, output_data_model, **_) -> Dataset:
    """`input_data_model` / `output_data_model`: a spec ({fields: ...}), an import path or a class."""
    input_model = resolve_data_model(input_data_model, "Inputs")
    output_model = resolve_data_model(output_data_model, "Outputs")
    (x_train, y_train) = _read(Path(train_path), input_model, output_model)
    (x_test, y_test) = _read(Path(test_path), input_model, output_model)
    return Dataset(Path(train_path).stem, x_train, y_train, x_test, y_test, input_model, output_model)

"""Your own data: JSONL files whose rows hold the input and output fields of two data models."""

from __future__ import annotations

from pathlib import Path

import pydantic

from promptrl.data_model import resolve_data_model
from promptrl.datasets import Dataset, iter_jsonl, register
from promptrl.errors import UserError


def _read(file: Path, input_model, output_model) -> tuple[list, list]:
    fields = [*input_model.model_fields, *output_model.model_fields]
    xs, ys = [], []
    for number, row in iter_jsonl(file, fields, f"data models {input_model.__name__}/{output_model.__name__}"):
        try:
            xs.append(input_model(**{k: row[k] for k in input_model.model_fields}))
            ys.append(output_model(**{k: row[k] for k in output_model.model_fields}))
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            raise UserError(f"{file} line {number}: field {first['loc'][0]}: {first['msg']}") from None
    return xs, ys


@register("jsonl")
def load_jsonl(train_path: str, test_path: str, input_data_model, output_data_model, **_) -> Dataset:
    """`input_data_model` / `output_data_model`: a spec ({fields: ...}), an import path or a class."""
    input_model = resolve_data_model(input_data_model, "Inputs")
    output_model = resolve_data_model(output_data_model, "Outputs")
    (x_train, y_train) = _read(Path(train_path), input_model, output_model)
    (x_test, y_test) = _read(Path(test_path), input_model, output_model)
    return Dataset(Path(train_path).stem, x_train, y_train, x_test, y_test, input_model, output_model)

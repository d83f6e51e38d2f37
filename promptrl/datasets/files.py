"""Your own data from files: CSV, Parquet, JSONL or JSON, with one set of keys for every format.

    promptrl train dataset=csv dataset.train_path=reviews.csv
    promptrl train dataset=jsonl dataset.train_path=train.jsonl dataset.test_path=test.jsonl

`train_path` is required; `test_path` and `val_path` are optional. Without a test file a fixed share
of the train file (`test_pool`, shuffled with `pool_seed`, never with the run's seed) is held out as
the test pool, so no run and no later evaluation tests on an example it trained on. Without a
validation file, validation examples come from the train pool.

The file's suffix picks its reader (.csv, .tsv, .parquet, .jsonl, .json); any other suffix is read
in the format of the loader's name (`dataset=csv` reads `data.txt` as CSV). A .json/.jsonl file
may hold one object per line, a JSON array of objects, or BIG-Bench-Hard's `{"examples": [...]}`.

Every row is validated against the data models (`input_data_model`, `output_data_model`: a spec
`{fields: ...}`, an import path or a class) after renaming its columns (`columns: {file_column:
field}`); a bad row is one error line naming the file, the row (a CSV's header is row 1, as in a
spreadsheet) and the field.
"""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path

import pydantic

from promptrl.data_model import resolve_data_model
from promptrl.datasets import Dataset, hold_out, iter_jsonl, register
from promptrl.errors import UserError

_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
             ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
_JSON_SHAPE = 'a JSON file holds one object per line, a list of objects, or {"examples": [{...}, ...]}'
_SHOWN_BAD_ROWS = 5
# The data models when the config gives none (null in the YAML, so a user's own spec replaces them
# instead of being merged into them): a `question` in, an `answer` out.
DEFAULT_INPUT = {"name": "Query", "fields": {"question": {"type": "str", "description": "The question"}}}
DEFAULT_OUTPUT = {"name": "Answer", "fields": {"answer": {"type": "str", "description": "The answer"}}}


# ---- rows -> examples (every format, and the hf loader) ---------------------------------------------------

def _is_list(annotation) -> bool:
    return typing.get_origin(annotation) is list


def _plain(value, annotation):
    """A cell as the data model expects it: numpy values as Python ones, None for a missing value
    (None, NaN), a JSON list written in a CSV cell as a list, a whole number for a text field as text."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays (Parquet, pandas) -> Python
        value = value.tolist()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if _is_list(annotation) and isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value  # the model's own error names the field
    if annotation is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # an id or a numeric label read as a number (Parquet, JSON)
    return value


def to_examples(source: str, rows, input_model, output_model, columns: dict | None = None,
                unit: str = "row", numbering: str = "") -> tuple[list, list]:
    """(xs, ys) from `rows`, an iterable of (number, {column: value}). Columns are renamed by `columns`
    ({column: field}) before validation; a missing value (None, NaN, an empty CSV cell) is a missing
    field unless the field has a default. Every row is checked; the first bad one is the error's line,
    which also counts the others. `numbering` says how rows are counted, e.g. " (the header is row 1)"."""
    renamed = dict(columns or {})
    column_of = {field: column for column, field in renamed.items()}
    fields = {**input_model.model_fields, **output_model.model_fields}
    xs, ys, errors = [], [], []
    for number, row in rows:
        if not isinstance(row, dict):
            errors.append((number, f"not a JSON object of fields (got {type(row).__name__}); {_JSON_SHAPE}"))
            continue
        values = {}
        for column, value in row.items():
            field = renamed.get(column, column)
            if field in fields:
                value = _plain(value, fields[field].annotation)
                if value is not None:
                    values[field] = value
        try:
            x = input_model(**{k: values[k] for k in input_model.model_fields if k in values})
            y = output_model(**{k: values[k] for k in output_model.model_fields if k in values})
        except pydantic.ValidationError as error:
            errors.append((number, _describe(error, values, column_of)))
            continue
        xs.append(x)
        ys.append(y)
    if errors:
        number, problem = errors[0]
        more = ""
        if len(errors) > 1:
            shown = ", ".join(str(n) for n, _ in errors[1:1 + _SHOWN_BAD_ROWS])
            plural = "s" if len(errors) > 2 else ""
            etc = ", ..." if len(errors) > 1 + _SHOWN_BAD_ROWS else ""
            more = f" ({len(errors) - 1} more bad {unit}{plural}: {shown}{etc})"
        raise UserError(f"{source} {unit} {number}{numbering}: {problem}{more}")
    return xs, ys


def _describe(error: pydantic.ValidationError, values: dict, column_of: dict) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    named = f"field '{field}'" + (f" (column '{column_of[field]}')" if field in column_of else "")
    model = error.title
    if first["type"] == "missing":
        return (f"missing {named}, needed by data model {model}; fill it in, rename a column to it with "
                "dataset.columns, or give the field a default")
    shown = repr(values.get(field))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{named}: {first['msg']} (got {shown}); fix the value or the field's type in data model {model}"


# ---- readers: (unit, rows) ---------------------------------------------------------------------------------

def _read_csv(file: Path, sep: str | None):
    import pandas as pd

    sep = sep or ("\t" if file.suffix.lower() == ".tsv" else ",")
    try:
        # every cell as text: pandas would read "NA"/"None" as missing and "007" as 7; pydantic converts
        # the text to the field's type. utf-8-sig drops the byte-order mark spreadsheets write.
        table = pd.read_csv(file, dtype=str, keep_default_na=False, sep=sep, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        return iter(())  # an empty file: read_examples says "no rows"
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{file}: cannot read it as CSV ({first_line}); check the file and dataset.sep") from None
    return _table_rows(table, empty_is_missing=True, first=2)


def _read_parquet(file: Path):
    import pandas as pd

    try:
        table = pd.read_parquet(file)
    except ImportError:
        raise UserError(f"{file}: reading Parquet needs pyarrow; install it with pip install 'promptrl[parquet]'") \
            from None
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"{file}: cannot read it as Parquet ({str(error).strip().splitlines()[0]})") from None
    return _table_rows(table, empty_is_missing=False)


def _table_rows(table, empty_is_missing: bool, first: int = 1):
    """Rows numbered from `first`: a CSV's from 2, as a spreadsheet shows them under its header (row 1)."""
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    for number, record in enumerate(records, first):
        if empty_is_missing:  # a CSV cannot tell an empty text from a missing one
            record = {k: (None if v == "" else v) for k, v in record.items()}
        yield number, record


def read_json(file: Path):
    """(unit, rows) of a JSON file: JSONL (one object per line), or a whole-file JSON array of objects or
    {"examples": [...]} (BIG-Bench-Hard's shape; dataset=bbh reads its task files here too)."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{file}: not UTF-8 text; save it as UTF-8") from None
    if text.lstrip()[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None  # several lines of objects: JSONL
        if isinstance(data, dict) and "examples" in data:
            data = data["examples"]
            if not isinstance(data, list):
                raise UserError(f"{file}: 'examples' is not a list; {_JSON_SHAPE}")
        elif isinstance(data, dict) and (text.strip().count("\n") or any(
                isinstance(v, list) and v and all(isinstance(i, dict) for i in v) for v in data.values())):
            # one object over several lines, or holding a list of objects: a container, not a one-line JSONL row
            raise UserError(f"{file}: a JSON object without an 'examples' list (its keys: "
                            f"{', '.join(map(str, data)) or 'none'}); {_JSON_SHAPE}")
        if isinstance(data, list):  # to_examples names a row that is not an object
            return "example", enumerate(data, 1)
    return "line", iter_jsonl(file, (), "the data models", shape=_JSON_SHAPE)


def read_examples(file, fmt: str, models, columns: dict | None, key: str, sep: str | None = None):
    """(xs, ys) of one file, read by its suffix (else as `fmt`)."""
    file = Path(file).expanduser()
    if not file.is_file():
        raise UserError(f"dataset.{key}: file not found: {file}; check the path (a relative path is read from "
                        "the working directory)")
    reader = _SUFFIXES.get(file.suffix.lower(), fmt)
    if reader == "csv":
        unit, rows = "row", _read_csv(file, sep)
    elif reader == "parquet":
        unit, rows = "row", _read_parquet(file)
    else:
        unit, rows = read_json(file)
    rows = list(rows)
    if not rows:
        raise UserError(f"dataset.{key}: {file} has no {unit}s; add examples to it")
    # a field no row has (a header without its column, JSON with other names) is one error for the file
    names = list(dict.fromkeys(name for _, row in rows if isinstance(row, dict) for name in row))
    check_columns(str(file), names, models, columns, fix=_separator_hint(names) if reader == "csv" and not sep else "")
    return to_examples(str(file), rows, *models, columns=columns, unit=unit,
                       numbering=" (the header is row 1)" if reader == "csv" else "")


def _separator_hint(names: list) -> str:
    """A CSV read as one column whose name holds another separator was written with that separator."""
    found = [c for c in (";", "\t", "|") if len(names) == 1 and c in str(names[0])]
    if not found:
        return ""
    if found[0] == "\t":
        return "the file looks tab-separated: name it .tsv, or set dataset.sep to a tab"
    return f"the file looks '{found[0]}'-separated: use dataset.sep='{found[0]}'"


def check_columns(source: str, names: list, models, columns: dict | None, fix: str = ""):
    """One error for data without a column for a required field (rather than one per row); `fix` replaces
    the usual advice (rename a column) when the reader knows better."""
    renamed = dict(columns or {})
    present = {renamed.get(c, c) for c in names}
    for model in models:
        for field, info in model.model_fields.items():
            if field not in present and info.is_required():
                fix = fix or f"rename one with dataset.columns='{{COLUMN: {field}}}'"
                raise UserError(f"{source}: no column for field '{field}' (needed by data model {model.__name__}); "
                                f"its columns are {', '.join(map(str, names))}; {fix}")


# ---- the dataset -----------------------------------------------------------------------------------------

def resolve_models(input_data_model, output_data_model) -> tuple[type, type]:
    return (resolve_data_model(input_data_model or DEFAULT_INPUT, "Inputs"),
            resolve_data_model(output_data_model or DEFAULT_OUTPUT, "Outputs"))


def check_columns_key(columns) -> dict:
    if columns is None:
        return {}
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        raise UserError(f"dataset.columns={columns!r} is not valid; give a mapping from the file's column to the "
                        "field, e.g. dataset.columns='{review: text, label: answer}'")
    return {str(k): v for k, v in columns.items()}


def build_dataset(name: str, models, train, test=None, val=None, test_pool=0.2, pool_seed: int = 0,
                  where: str = "the train data") -> Dataset:
    """A Dataset from (xs, ys) pools; without `test`, `test_pool` of `train` is held out once."""
    input_model, output_model = models
    hint = ""
    if test is None:
        train_idx, test_idx = hold_out(len(train[0]), test_pool, pool_seed, where)
        test = ([train[0][i] for i in test_idx], [train[1][i] for i in test_idx])
        train = ([train[0][i] for i in train_idx], [train[1][i] for i in train_idx])
        hint = f", or raise dataset.test_pool (the share of {where} held out for testing, now {test_pool})"
    return Dataset(name, train[0], train[1], test[0], test[1], input_model, output_model,
                   x_val=val[0] if val else None, y_val=val[1] if val else None, size_hint=hint)


def _loader(fmt: str):
    def load_files(train_path: str, input_data_model=None, output_data_model=None, test_path: str | None = None,
                   val_path: str | None = None, columns: dict | None = None, test_pool=0.2, pool_seed: int = 0,
                   sep: str | None = None, **_) -> Dataset:
        if not train_path:
            raise UserError(f"dataset={fmt} needs a train file; set dataset.train_path=PATH")
        models = resolve_models(input_data_model, output_data_model)
        columns = check_columns_key(columns)

        def read(path, key):
            return read_examples(path, fmt, models, columns, key, sep) if path else None

        train = read(train_path, "train_path")
        # named after the config (like bbh, gsm8k): the name a checkpoint records and task_name uses
        return build_dataset(fmt, models, train, read(test_path, "test_path"), read(val_path, "val_path"),
                             test_pool, pool_seed, where=f"train file {Path(train_path).name}")

    load_files.__name__ = f"load_{fmt}"
    return load_files


for _fmt in ("csv", "parquet", "jsonl"):
    register(_fmt)(_loader(_fmt))

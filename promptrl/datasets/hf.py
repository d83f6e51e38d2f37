"""Hugging Face `datasets`: a hub dataset, a local folder, or local files through its builders.

    promptrl train dataset=hf dataset.path=csv dataset.data_files=reviews.csv dataset.test_split=null
    promptrl train dataset=hf dataset.path=stanfordnlp/imdb dataset.columns='{text: question, label: answer}'

`path`, `subset` (load_dataset's `name`), `data_files`, `data_dir`, `revision`, `cache_dir` and
`load_kwargs` go to `datasets.load_dataset`; `train_split` / `test_split` / `val_split` name its splits.
`test_split: null` holds out `test_pool` of the train split (fixed by `pool_seed`, like the file
loaders); `val_split: null` draws validation from the train pool. Rows are validated by the same
code as the file loaders (`columns` renames first). A class-label column gives its label names
("pos") unless the field is an int. With HF_DATASETS_OFFLINE=1 local files and the local cache work.
Hub credentials come from the environment (HF_TOKEN) or `hf auth login`, never from the config.

An optional extra: pip install 'promptrl[hf]'.
"""

from __future__ import annotations

from promptrl.datasets import Dataset, register
from promptrl.datasets.files import build_dataset, check_columns, check_columns_key, resolve_models, to_examples
from promptrl.errors import UserError


def _load(path: str, **kwargs):
    try:
        import datasets
    except ImportError:
        raise UserError("dataset=hf needs the Hugging Face datasets package; install it with "
                        "pip install 'promptrl[hf]'") from None
    datasets.disable_progress_bars()  # the run has its own progress display
    try:
        loaded = datasets.load_dataset(path, **{k: v for k, v in kwargs.items() if v is not None})
    except Exception as error:  # noqa: BLE001 - whatever load_dataset raises is about the user's arguments
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise UserError(f"hf: cannot load dataset.path={path!r} ({type(error).__name__}: {first_line}); check "
                        "dataset.path, subset and data_files (offline, only local files and the local cache "
                        "work)") from None
    if not isinstance(loaded, datasets.DatasetDict):
        raise UserError(f"hf: dataset.path={path!r} did not give named splits; drop 'split' from dataset.load_kwargs "
                        "and name them with dataset.train_split / test_split / val_split")
    return loaded


def _examples(loaded, split: str, key: str, path: str, models, columns: dict) -> tuple[list, list]:
    if split not in loaded:
        hint = "; or test_split=null to hold out dataset.test_pool of the train split" if key == "test_split" else ""
        raise UserError(f"hf: dataset '{path}' has no split '{split}' (dataset.{key}); its splits are "
                        f"{', '.join(loaded)}{hint}")
    table = loaded[split]
    source = f"hf dataset '{path}' split '{split}'"
    check_columns(source, table.column_names, models, columns)
    fields = {**models[0].model_fields, **models[1].model_fields}
    labels = {}  # class-label columns whose field wants the label's name, not its number
    for column, feature in table.features.items():
        field = fields.get(columns.get(column, column))
        if type(feature).__name__ == "ClassLabel" and field is not None and field.annotation is not int:
            labels[column] = feature.names
    # label -1 is the hub's "no label" (e.g. GLUE test splits): a missing value
    rows = ((number, {c: ((labels[c][v] if v >= 0 else None) if c in labels and isinstance(v, int) else v)
                      for c, v in row.items()})
            for number, row in enumerate(table.to_list(), 1))
    return to_examples(source, rows, *models, columns=columns)


@register("hf")
def load_hf(path: str, input_data_model=None, output_data_model=None, subset: str | None = None, data_files=None,
            data_dir: str | None = None, revision: str | None = None, cache_dir: str | None = None,
            train_split: str = "train", test_split: str | None = "test", val_split: str | None = None,
            columns: dict | None = None, test_pool=0.2, pool_seed: int = 0, load_kwargs: dict | None = None,
            **_) -> Dataset:
    if not path:
        raise UserError("dataset=hf needs dataset.path: a hub dataset (e.g. stanfordnlp/imdb), a local folder, "
                        "or a builder (csv, json, parquet) with dataset.data_files=FILE")
    if not train_split:
        raise UserError("dataset=hf needs dataset.train_split, the split to train on (e.g. train)")
    if not isinstance(load_kwargs or {}, dict):
        raise UserError(f"dataset.load_kwargs={load_kwargs!r} is not valid; give a mapping of load_dataset arguments")
    models = resolve_models(input_data_model, output_data_model)
    columns = check_columns_key(columns)
    loaded = _load(path, name=subset, data_files=data_files, data_dir=data_dir, revision=revision,
                   cache_dir=cache_dir, **(load_kwargs or {}))

    def split(name, key):
        return _examples(loaded, name, key, path, models, columns) if name else None

    return build_dataset("hf", models, split(train_split, "train_split"), split(test_split, "test_split"),
                         split(val_split, "val_split"), test_pool, pool_seed,
                         where=f"hf dataset '{path}' split '{train_split}'")

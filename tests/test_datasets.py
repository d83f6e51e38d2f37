"""Datasets: synthetic loaders, disjoint splits, GSM8K from a local folder, generic JSONL."""

from __future__ import annotations

import json

import pydantic
import pytest

from promptrl import UserError, datasets
from promptrl.datasets import Dataset, Split
from promptrl.datasets.synthetic import Review, Sentiment


def texts(xs) -> list[str]:
    return [json.dumps(x.model_dump(), sort_keys=True) for x in xs]


def dump(items) -> list[dict]:
    return [item.model_dump() for item in items]


# ---- registry ------------------------------------------------------------------------------------------

def test_registry_lists_builtin_loaders():
    assert {"sentiment", "addition", "gsm8k", "jsonl"} <= set(datasets.available())


def test_unknown_dataset_is_a_user_error_listing_available():
    with pytest.raises(UserError) as info:
        datasets.load("sentimnt")
    assert "sentimnt" in str(info.value) and "sentiment" in str(info.value) and "addition" in str(info.value)


# ---- synthetic -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sentiment", "addition"])
def test_synthetic_loaders_are_deterministic_for_a_seed(name):
    a, b = datasets.load(name, seed=3), datasets.load(name, seed=3)
    assert dump(a.x_train) == dump(b.x_train) and dump(a.y_train) == dump(b.y_train)
    assert dump(a.x_test) == dump(b.x_test) and dump(a.y_test) == dump(b.y_test)
    other = datasets.load(name, seed=4)
    assert dump(other.x_train) != dump(a.x_train)


@pytest.mark.parametrize("name", ["sentiment", "addition"])
def test_synthetic_train_and_test_share_no_input(name):
    ds = datasets.load(name, seed=0)
    assert len(ds.x_train) == 500 and len(ds.x_test) == 500
    assert len(ds.y_train) == 500 and len(ds.y_test) == 500
    train, test = set(texts(ds.x_train)), set(texts(ds.x_test))
    assert len(train) == 500 and len(test) == 500
    assert not train & test


def test_sentiment_pool_sizes_labels_and_data_models():
    ds = datasets.load("sentiment", seed=0, train_pool=40, test_pool=20)
    assert (len(ds.x_train), len(ds.x_test)) == (40, 20)
    assert {y.answer for y in ds.y_train + ds.y_test} == {"positive", "negative"}
    assert ds.input_data_model is Review and ds.output_data_model is Sentiment
    assert all(isinstance(x, Review) for x in ds.x_train)


def test_addition_answers_are_the_sums():
    ds = datasets.load("addition", seed=1, train_pool=30, test_pool=30)
    for x, y in zip(ds.x_train + ds.x_test, ds.y_train + ds.y_test):
        a, b = x.question.removeprefix("What is ").removesuffix("?").split(" + ")
        assert 10 <= int(a) <= 99 and 10 <= int(b) <= 99
        assert y.answer == int(a) + int(b)


@pytest.mark.parametrize("name", ["sentiment", "addition"])
def test_synthetic_pools_too_large_are_user_errors(name):
    with pytest.raises(UserError, match="train_pool"):
        datasets.load(name, train_pool=100_000, test_pool=10)


# ---- splits -----------------------------------------------------------------------------------------------

def test_splits_are_disjoint_with_requested_sizes():
    ds = datasets.load("sentiment", seed=0)
    train, val, test = ds.splits(train_size=16, val_size=8, test_size=10, seed=0)
    assert (len(train), len(val), len(test)) == (16, 8, 10)
    assert all(isinstance(s, Split) for s in (train, val, test))
    a, b, c = set(texts(train.x)), set(texts(val.x)), set(texts(test.x))
    assert len(a) == 16 and len(b) == 8 and len(c) == 10
    assert not a & b and not a & c and not b & c
    # targets stay paired with their inputs
    truth = {x.text: y.answer for x, y in zip(ds.x_train + ds.x_test, ds.y_train + ds.y_test)}
    for split in (train, val, test):
        assert all(truth[x.text] == y.answer for x, y in zip(split.x, split.y))
    x, y = train  # unpackable like a tuple
    assert x is train.x and y is train.y


def test_splits_val_comes_from_the_train_pool_and_test_from_the_test_pool():
    ds = datasets.load("addition", seed=0, train_pool=50, test_pool=30)
    train, val, test = ds.splits(10, 5, 7, seed=1)
    pool, test_pool = set(texts(ds.x_train)), set(texts(ds.x_test))
    assert set(texts(train.x)) <= pool and set(texts(val.x)) <= pool
    assert set(texts(test.x)) <= test_pool


def test_splits_are_deterministic_for_a_seed():
    ds = datasets.load("sentiment", seed=0)
    first = [dump(s.x) for s in ds.splits(10, 5, 5, seed=2)]
    assert first == [dump(s.x) for s in ds.splits(10, 5, 5, seed=2)]
    assert first != [dump(s.x) for s in ds.splits(10, 5, 5, seed=3)]


def test_splits_none_sizes_take_what_is_left():
    ds = datasets.load("sentiment", seed=0, train_pool=30, test_pool=12)
    train, val, test = ds.splits(None, 5, None, seed=0)
    assert (len(train), len(val), len(test)) == (25, 5, 12)


def small_dataset(train_texts, test_texts) -> Dataset:
    return Dataset(
        "handmade",
        [Review(text=t) for t in train_texts], [Sentiment(answer="positive") for _ in train_texts],
        [Review(text=t) for t in test_texts], [Sentiment(answer="negative") for _ in test_texts],
        Review, Sentiment,
    )


def test_splits_never_leak_test_inputs_duplicated_in_the_train_pool():
    ds = small_dataset(["a", "b", "T1", "c", "T2", "d", "T1"], ["T1", "T2"])
    for seed in range(20):
        train, val, test = ds.splits(None, 2, 2, seed=seed)
        assert {x.text for x in test.x} == {"T1", "T2"}
        assert not {x.text for x in val.x} & {"T1", "T2"}
        assert not {x.text for x in train.x} & {"T1", "T2"}
        assert len(val) == 2 and len(train) == 2


def test_splits_too_large_sizes_are_user_errors():
    ds = small_dataset(["a", "b", "c", "T"], ["T", "u"])
    with pytest.raises(UserError, match="lower the sizes"):
        ds.splits(3, 1, 2)  # "T" is in the test split, so the train pool holds only 3
    with pytest.raises(UserError):
        ds.splits(1, 1, 3)
    with pytest.raises(UserError):
        ds.splits(1, -1, 2)
    train, val, test = ds.splits(2, 1, 2, seed=0)
    assert (len(train), len(val), len(test)) == (2, 1, 2)


def test_splits_train_and_val_share_no_input_when_the_pool_has_duplicates():
    ds = small_dataset(["a", "a", "b", "b", "c", "c"], ["z"])
    for seed in range(20):
        train, val, _ = ds.splits(1, 1, 1, seed=seed)
        assert not {x.text for x in train.x} & {x.text for x in val.x}, f"seed {seed}"


# ---- GSM8K ----------------------------------------------------------------------------------------------------

def write_jsonl(path, rows, raw_lines=()):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(raw_lines), encoding="utf-8")


def gsm8k_folder(tmp_path, train_rows, test_rows):
    write_jsonl(tmp_path / "train.jsonl", train_rows)
    write_jsonl(tmp_path / "test.jsonl", test_rows)
    return tmp_path


def test_gsm8k_from_a_local_folder_parses_final_answers(tmp_path):
    folder = gsm8k_folder(
        tmp_path,
        [{"question": "Big?", "answer": "1000 + 234 = 1,234\n#### 1,234"},
         {"question": "Half?", "answer": "She has 3.\n#### 1.5"}],
        [{"question": "Six threes?", "answer": "3 * 6 = 18\n#### 18"},
         {"question": "Owes?", "answer": "#### -7"}],
    )
    (folder / "test.jsonl").write_text((folder / "test.jsonl").read_text() + "\n\n")  # blank lines are skipped
    ds = datasets.load("gsm8k", path=str(folder))
    assert ds.name == "gsm8k"
    assert [x.question for x in ds.x_train] == ["Big?", "Half?"]
    assert [y.answer for y in ds.y_train] == [1234.0, 1.5]
    assert [y.answer for y in ds.y_test] == [18.0, -7.0]
    assert all(isinstance(y.answer, float) for y in ds.y_train + ds.y_test)
    assert list(ds.output_data_model.model_fields) == ["answer"]


def test_gsm8k_row_missing_answer_names_line_and_field(tmp_path):
    folder = gsm8k_folder(
        tmp_path,
        [{"question": "ok", "answer": "#### 1"}, {"question": "no answer here"}],
        [{"question": "q", "answer": "#### 2"}],
    )
    with pytest.raises(UserError) as info:
        datasets.load("gsm8k", path=str(folder))
    message = str(info.value)
    assert "\n" not in message
    assert "line 2" in message and "'answer'" in message and "train.jsonl" in message


def test_gsm8k_bad_rows_are_user_errors(tmp_path):
    folder = gsm8k_folder(tmp_path, [{"question": "q", "answer": "no final line"}], [])
    with pytest.raises(UserError, match="line 1.*####"):
        datasets.load("gsm8k", path=str(folder))
    (folder / "train.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{broken\n')
    with pytest.raises(UserError, match="line 2: not valid JSON"):
        datasets.load("gsm8k", path=str(folder))


def test_gsm8k_missing_files_are_user_errors(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "#### 1"}])
    with pytest.raises(UserError, match="test.jsonl"):
        datasets.load("gsm8k", path=str(tmp_path))


def test_gsm8k_numeric_answer_is_taken_as_is_and_other_types_are_user_errors(tmp_path):
    folder = gsm8k_folder(tmp_path, [{"question": "q", "answer": 18}], [{"question": "q", "answer": "#### 1"}])
    assert datasets.load("gsm8k", path=str(folder)).y_train[0].answer == 18.0
    (tmp_path / "b").mkdir()
    folder = gsm8k_folder(tmp_path / "b", [{"question": "q", "answer": [18]}], [{"question": "q", "answer": "#### 1"}])
    with pytest.raises(UserError, match="line 1"):
        datasets.load("gsm8k", path=str(folder))


# ---- generic JSONL --------------------------------------------------------------------------------------------

INPUT_SPEC = {"name": "Ticket", "fields": {"text": {"type": "str", "description": "The ticket"}}}
OUTPUT_SPEC = {"fields": {"label": {"type": "choice", "choices": ["bug", "feature"]}, "priority": "int"}}


def test_jsonl_loader_with_spec_data_models(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [
        {"text": "crash on start", "label": "bug", "priority": 1, "ignored": "x"},
        {"text": "add dark mode", "label": "feature", "priority": "3"},
    ])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "typo in menu", "label": "bug", "priority": 2}])
    ds = datasets.load("jsonl", train_path=str(tmp_path / "train.jsonl"), test_path=str(tmp_path / "test.jsonl"),
                       input_data_model=INPUT_SPEC, output_data_model=OUTPUT_SPEC)
    assert ds.name == "jsonl"  # the config name, which a checkpoint records
    assert ds.input_data_model.__name__ == "Ticket"
    assert [x.model_dump() for x in ds.x_train] == [{"text": "crash on start"}, {"text": "add dark mode"}]
    assert [y.model_dump() for y in ds.y_train] == [{"label": "bug", "priority": 1}, {"label": "feature", "priority": 3}]
    assert [y.model_dump() for y in ds.y_test] == [{"label": "bug", "priority": 2}]
    train, val, test = ds.splits(1, 1, 1, seed=0)
    assert len(train) == len(val) == len(test) == 1


def test_jsonl_loader_with_import_path_data_models(tmp_path):
    write_jsonl(tmp_path / "tr.jsonl", [{"text": "nice", "answer": "positive"}])
    write_jsonl(tmp_path / "te.jsonl", [{"text": "bad", "answer": "negative"}])
    ds = datasets.load("jsonl", train_path=str(tmp_path / "tr.jsonl"), test_path=str(tmp_path / "te.jsonl"),
                       input_data_model="promptrl.datasets.synthetic:Review",
                       output_data_model="promptrl.datasets.synthetic:Sentiment")
    assert isinstance(ds.x_train[0], Review) and ds.y_test[0].answer == "negative"


def test_jsonl_missing_field_names_line_field_and_model(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "bug", "priority": 1}, {"text": "b", "label": "bug"}])
    write_jsonl(tmp_path / "test.jsonl", [])
    with pytest.raises(UserError) as info:
        datasets.load("jsonl", train_path=str(tmp_path / "train.jsonl"), test_path=str(tmp_path / "test.jsonl"),
                      input_data_model=INPUT_SPEC, output_data_model=OUTPUT_SPEC)
    message = str(info.value)
    assert "line 2" in message and "'priority'" in message and "Outputs" in message and "\n" not in message


def test_jsonl_invalid_value_is_a_user_error_naming_the_line(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "question", "priority": 1}])
    write_jsonl(tmp_path / "test.jsonl", [])
    with pytest.raises(UserError) as info:
        datasets.load("jsonl", train_path=str(tmp_path / "train.jsonl"), test_path=str(tmp_path / "test.jsonl"),
                      input_data_model=INPUT_SPEC, output_data_model=OUTPUT_SPEC)
    assert "line 1" in str(info.value) and "label" in str(info.value)
    assert not isinstance(info.value, pydantic.ValidationError)


def test_jsonl_missing_file_and_bad_spec_are_user_errors(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "t", "label": "bug", "priority": 1}])
    with pytest.raises(UserError, match="not found"):
        datasets.load("jsonl", train_path=str(tmp_path / "train.jsonl"), test_path=str(tmp_path / "nope.jsonl"),
                      input_data_model=INPUT_SPEC, output_data_model=OUTPUT_SPEC)
    with pytest.raises(UserError, match="'label'"):
        datasets.load("jsonl", train_path=str(tmp_path / "train.jsonl"), test_path=str(tmp_path / "train.jsonl"),
                      input_data_model=INPUT_SPEC, output_data_model={"fields": {"label": {"type": "choice"}}})


def test_a_field_both_input_and_output_is_refused(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    spec = {"fields": {"question": "str", "answer": "str"}}
    with pytest.raises(UserError, match="both an input and an output"):
        datasets.load("jsonl", train_path=str(tmp_path / "d.jsonl"), test_path=str(tmp_path / "d.jsonl"),
                      input_data_model=spec, output_data_model={"fields": {"answer": "str"}})


@pytest.mark.parametrize("field_spec, expected", [({"type": "choice", "choices": "Paris"}, "choices must be a list"),
                                                  (5, "expected a type name"),
                                                  ({"type": "int", "ge": "abc"}, "ge must be a number")])
def test_spec_mistakes_name_the_field(field_spec, expected):
    from promptrl.data_model import data_model_from_spec

    with pytest.raises(UserError, match=expected) as error:
        data_model_from_spec("Answer", {"answer": field_spec})
    assert "'answer'" in str(error.value)


# ---- BIG-Bench-Hard ---------------------------------------------------------------------------------------

def bbh_folder(tmp_path, tasks: dict[str, list[tuple[str, str]]]):
    for task, rows in tasks.items():
        examples = [{"input": q, "target": t} for q, t in rows]
        (tmp_path / f"{task}.json").write_text(json.dumps({"canary": "x", "examples": examples}))
    return tmp_path


def test_bbh_splits_are_disjoint_keep_targets_verbatim_and_fix_the_test_pool(tmp_path):
    rows = [(f"Which is right?\nOptions:\n(A) red {i}\n(B) blue {i}", "(A)" if i % 3 else "(B)") for i in range(40)]
    folder = bbh_folder(tmp_path, {"hyperbaton": rows, "navigate": [(f"Go {i}?", "Yes") for i in range(5)]})
    ds = datasets.load("bbh", task="hyperbaton", path=str(folder), test_pool=12)
    assert (len(ds.x_train), len(ds.x_test)) == (28, 12)
    assert list(ds.input_data_model.model_fields) == ["question"] and list(ds.output_data_model.model_fields) == ["answer"]
    assert "exactly one of the options" in ds.output_data_model.model_fields["answer"].description
    answers = dict(rows)
    train, val, test = ds.splits(train_size=10, val_size=6, test_size=12, seed=1)
    assert (len(train), len(val), len(test)) == (10, 6, 12)
    for split in (train, val, test):  # targets verbatim, still paired with their inputs
        assert all(y.answer == answers[x.question] for x, y in zip(split.x, split.y))
    groups = [set(texts(s.x)) for s in (train, val, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    # the run seed draws train/val, but the test pool never moves: no seed puts a training example in a test split
    _, _, other_test = ds.splits(train_size=10, val_size=6, test_size=12, seed=2)
    other = datasets.load("bbh", task="hyperbaton", path=str(folder), test_pool=12)
    assert set(texts(other_test.x)) == groups[2] and dump(other.x_test) == dump(ds.x_test)
    assert texts(train.x) != texts(ds.splits(train_size=10, val_size=6, test_size=12, seed=2)[0].x)
    yes_no = datasets.load("bbh", task="navigate", path=str(folder), test_pool=2)
    assert yes_no.output_data_model.model_fields["answer"].description.endswith("exactly one of Yes")


def test_bbh_test_pools_never_move(tmp_path):
    # Recorded benchmarks depend on which examples each BBH task holds out: these ids were computed with
    # the loader before it shared hold_out and the JSON reader with the file loaders.
    examples = [{"input": f"q{i}", "target": "(A)" if i % 3 else "(B)"} for i in range(37)]
    (tmp_path / "pin.json").write_text(json.dumps({"canary": "x", "examples": examples}))
    expected = {
        (10, 0): ([0, 19, 14, 21, 22, 17, 34, 30, 7, 5],
                  [10, 13, 36, 1, 28, 23, 8, 3, 20, 27, 4, 33, 6, 18, 11, 15, 9, 35, 25, 29, 12, 31, 32, 16, 2, 26, 24]),
        (10, 3): ([5, 9, 16, 3, 11, 18, 32, 14, 13, 1],
                  [29, 33, 28, 2, 10, 24, 31, 12, 21, 20, 25, 27, 22, 6, 7, 17, 35, 36, 26, 0, 19, 4, 30, 23, 8, 34, 15]),
        (36, 7): ([5, 19, 14, 8, 32, 36, 27, 12, 26, 30, 0, 35, 29, 10, 15, 33, 34, 22, 17, 21, 7, 24, 23, 13, 2, 28,
                   31, 16, 1, 18, 11, 6, 4, 3, 25, 9], [20]),
    }
    for (test_pool, pool_seed), (test_ids, train_ids) in expected.items():
        ds = datasets.load("bbh", task="pin", path=str(tmp_path), test_pool=test_pool, pool_seed=pool_seed)
        assert [int(x.question[1:]) for x in ds.x_test] == test_ids
        assert [int(x.question[1:]) for x in ds.x_train] == train_ids
        assert [y.answer for y in ds.y_test] == [examples[i]["target"] for i in test_ids]


def test_the_download_cache_follows_promptrl_cache_set_after_import(tmp_path, monkeypatch):
    from promptrl.datasets import bbh, gsm8k

    monkeypatch.setenv("PROMPTRL_CACHE", str(tmp_path))
    assert bbh._folder(None, None) == tmp_path / "bbh" and gsm8k.default_cache() == tmp_path / "gsm8k"


def test_bbh_unknown_task_and_bad_files_are_one_line_user_errors(tmp_path):
    folder = bbh_folder(tmp_path, {"navigate": [("Go?", "Yes"), ("Stay?", "No")], "snarks": [("a", "(A)")] * 3})
    for task in ("hyperbaton", None):
        with pytest.raises(UserError) as info:
            datasets.load("bbh", task=task, path=str(folder))
        assert "\n" not in str(info.value) and "navigate, snarks" in str(info.value)
    with pytest.raises(UserError, match="not found"):
        datasets.load("bbh", task="navigate", path=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="test_pool"):
        datasets.load("bbh", task="navigate", path=str(folder), test_pool=2)
    (folder / "broken.json").write_text('{"examples": [{"input": "q"}]}')
    with pytest.raises(UserError, match="example 1: missing field 'target'"):
        datasets.load("bbh", task="broken", path=str(folder))
    (folder / "broken.json").write_text('{"examples": ["q"]}')
    with pytest.raises(UserError, match="example 1: missing field 'input'"):
        datasets.load("bbh", task="broken", path=str(folder))
    (folder / "broken.json").write_text('{"data": [{"input": "q", "target": "a"}]}')  # the file loaders' message
    with pytest.raises(UserError, match="a JSON object without an 'examples' list"):
        datasets.load("bbh", task="broken", path=str(folder))


def test_bbh_config_runs_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from promptrl.cli import app

    (tmp_path / "bbh").mkdir()
    folder = bbh_folder(tmp_path / "bbh", {"parity": [(f"Is {i} even?", "Yes" if i % 2 == 0 else "No") for i in range(30)]})
    result = CliRunner().invoke(app, ["train", "--dry-run", "dataset=bbh", "dataset.task=parity",
                                      f"dataset.path={folder}", "dataset.test_pool=10", "dataset.test_size=10",
                                      "dataset.train_size=8", "dataset.val_size=4", "nb_runs=2",
                                      f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["sizes"]["train"] == 8 and plan["sizes"]["val"] == 4 and plan["calls"]["baseline"] == 20

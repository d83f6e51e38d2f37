"""Your own data: CSV, Parquet, JSONL/JSON and Hugging Face datasets through one set of keys."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from promptrl import UserError, datasets
from promptrl.cli import app
from promptrl.datasets import describe_source

INPUT = {"name": "Ticket", "fields": {"text": "str", "tags": "list[str]"}}
OUTPUT = {"name": "Triage", "fields": {"label": {"type": "choice", "choices": ["bug", "feature"]}, "priority": "int",
                                       "score": "float", "urgent": "bool"}}
ROWS = [{"text": "crash on start", "tags": ["ui", "go"], "label": "bug", "priority": 1, "score": 0.5, "urgent": True},
        {"text": "add dark mode", "tags": [], "label": "feature", "priority": 3, "score": 2.0, "urgent": False},
        {"text": "None", "tags": ["x"], "label": "bug", "priority": 10, "score": -1.25, "urgent": False},
        {"text": "007", "tags": ["a,b"], "label": "feature", "priority": 0, "score": 3.0, "urgent": True}]
QA = {"input_data_model": {"fields": {"question": "str"}}, "output_data_model": {"fields": {"answer": "str"}}}


def dump(items) -> list[dict]:
    return [item.model_dump() for item in items]


def write_csv(path, rows, rename=None):
    rename = rename or {}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([rename.get(k, k) for k in rows[0]])
        for row in rows:  # a list cell is written as a JSON list, a bool as a spreadsheet would
            writer.writerow([json.dumps(v) if isinstance(v, list) else str(v).upper() if isinstance(v, bool) else v
                             for v in row.values()])
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def load(name, train, test=None, **kwargs):
    return datasets.load(name, train_path=str(train), test_path=str(test) if test else None,
                         input_data_model=kwargs.pop("input_data_model", INPUT),
                         output_data_model=kwargs.pop("output_data_model", OUTPUT), **kwargs)


def one_line_error(call) -> str:
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- every format gives the same examples -----------------------------------------------------------------

def test_csv_parquet_jsonl_and_json_with_the_same_spec_give_the_same_examples(tmp_path):
    files = {
        "csv": write_csv(tmp_path / "t.csv", ROWS),
        "parquet": tmp_path / "t.parquet",
        "jsonl": write_jsonl(tmp_path / "t.jsonl", ROWS),
        "json array": tmp_path / "array.json",
        "bbh-style": tmp_path / "examples.json",
    }
    pd.DataFrame(ROWS).to_parquet(files["parquet"])
    files["json array"].write_text(json.dumps(ROWS, indent=2))
    files["bbh-style"].write_text(json.dumps({"canary": "x", "examples": ROWS}, indent=2))
    loaded = {kind: load("jsonl" if "json" in kind or "bbh" in kind else kind, file, file)
              for kind, file in files.items()}
    expected_x = [{"text": r["text"], "tags": r["tags"]} for r in ROWS]
    expected_y = [{k: r[k] for k in ("label", "priority", "score", "urgent")} for r in ROWS]
    for kind, ds in loaded.items():
        assert dump(ds.x_train) == expected_x, kind
        assert dump(ds.y_train) == expected_y, kind
        assert dump(ds.x_test) == expected_x, kind
        # plain Python values, not numpy ones or text
        assert [type(y.priority) for y in ds.y_train] == [int] * 4 and type(ds.y_train[0].urgent) is bool, kind
    assert {ds.name for ds in loaded.values()} == {"csv", "parquet", "jsonl"}


def test_columns_rename_before_validation(tmp_path):
    train = write_csv(tmp_path / "t.csv", ROWS, rename={"text": "body", "label": "kind"})
    ds = load("csv", train, train, columns={"body": "text", "kind": "label"})
    assert [x.text for x in ds.x_train] == [r["text"] for r in ROWS]
    assert [y.label for y in ds.y_train] == [r["label"] for r in ROWS]


def test_a_file_suffix_picks_the_reader_and_tsv_is_tab_separated(tmp_path):
    table = pd.DataFrame([{"question": "2+2?", "answer": "4"}, {"question": "3+3?", "answer": "6"}])
    table.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    spec = {"input_data_model": {"fields": {"question": "str"}}, "output_data_model": {"fields": {"answer": "str"}}}
    ds = load("jsonl", tmp_path / "a.tsv", tmp_path / "a.tsv", **spec)  # dataset=jsonl given a .tsv file
    assert [(x.question, y.answer) for x, y in zip(ds.x_train, ds.y_train)] == [("2+2?", "4"), ("3+3?", "6")]
    (tmp_path / "b.csv").write_text("question;answer\n2+2?;4\n")
    assert load("csv", tmp_path / "b.csv", tmp_path / "b.csv", sep=";", **spec).y_train[0].answer == "4"


# ---- BIG-Bench-Hard files and JSON arrays -------------------------------------------------------------------

def test_a_bbh_task_file_loads_with_dataset_jsonl_and_columns(tmp_path):
    task = tmp_path / "hyperbaton.json"
    task.write_text(json.dumps({"examples": [{"input": f"Which order {i}?", "target": "(A)"} for i in range(10)]}))
    ds = datasets.load("jsonl", train_path=str(task), test_pool=3, columns={"input": "question", "target": "answer"},
                       **QA)
    assert (len(ds.x_train), len(ds.x_test)) == (7, 3) and ds.y_test[0].answer == "(A)"
    # without the rename: one error for the file, naming the field, the file's names, and how to map them
    message = one_line_error(lambda: datasets.load(
        "jsonl", train_path=str(task), **QA))
    assert "hyperbaton.json: no column for field 'question'" in message and "input, target" in message
    assert "dataset.columns" in message
    # a field missing from some examples only: the first such example, and how many more
    task.write_text(json.dumps({"examples": [{"input": "q", "target": "a"}, {"input": "r"}, {"input": "s"}]}))
    message = one_line_error(lambda: datasets.load(
        "jsonl", train_path=str(task), test_path=str(task), columns={"input": "question", "target": "answer"},
        **QA))
    assert "hyperbaton.json example 2: missing field 'answer' (column 'target')" in message
    assert "1 more bad example: 3" in message


def test_a_json_array_of_non_objects_is_one_line(tmp_path):
    (tmp_path / "a.json").write_text('[{"question": "q", "answer": "a"}, "oops"]')
    message = one_line_error(lambda: load("jsonl", tmp_path / "a.json", tmp_path / "a.json",
                                          **QA))
    assert "a.json example 2" in message and "not a JSON object" in message
    # one object holding the rows under another key: not read as a one-line JSONL file
    (tmp_path / "b.json").write_text(json.dumps({"data": [{"question": "q", "answer": "a"}]}, indent=2))
    message = one_line_error(lambda: load("jsonl", tmp_path / "b.json", **QA))
    assert "b.json: a JSON object without an 'examples' list (its keys: data)" in message
    assert '{"examples": [{...}, ...]}' in message and "not valid JSON" not in message
    (tmp_path / "c.json").write_text(json.dumps({"data": [{"question": "q", "answer": "a"}]}))  # on one line too
    assert "without an 'examples' list" in one_line_error(lambda: load("jsonl", tmp_path / "c.json", **QA))
    # a one-line JSONL file is still one row
    (tmp_path / "d.json").write_text('{"question": "q", "answer": "a"}\n')
    assert load("jsonl", tmp_path / "d.json", tmp_path / "d.json", **QA).y_train[0].answer == "a"


# ---- bad rows: one line naming file, row and field --------------------------------------------------------------

def test_a_csv_empty_cell_for_a_required_field_is_one_line_naming_file_row_and_field(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[2]["priority"] = ""
    rows[3]["priority"] = ""
    train = write_csv(tmp_path / "tickets.csv", rows)
    message = one_line_error(lambda: load("csv", train, train))
    # numbered as a spreadsheet shows them: the header is row 1, the third example row 4
    assert "tickets.csv row 4 (the header is row 1)" in message and "missing field 'priority'" in message
    assert "Triage" in message and "1 more bad row: 5" in message


def test_a_bad_value_names_file_row_field_and_value(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[1]["label"] = "question"
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    message = one_line_error(lambda: load("parquet", tmp_path / "t.parquet", tmp_path / "t.parquet"))
    assert "t.parquet row 2" in message and "field 'label'" in message and "'question'" in message
    write_jsonl(tmp_path / "t.jsonl", rows)
    message = one_line_error(lambda: load("jsonl", tmp_path / "t.jsonl", tmp_path / "t.jsonl"))
    assert "t.jsonl line 2" in message and "field 'label'" in message
    write_csv(tmp_path / "r.csv", rows, rename={"label": "kind"})
    message = one_line_error(lambda: load("csv", tmp_path / "r.csv", tmp_path / "r.csv", columns={"kind": "label"}))
    assert "r.csv row 3 (the header is row 1)" in message and "field 'label' (column 'kind')" in message


def test_a_missing_column_is_one_error_for_the_file(tmp_path):
    train = write_csv(tmp_path / "t.csv", [{k: v for k, v in r.items() if k != "urgent"} for r in ROWS])
    message = one_line_error(lambda: load("csv", train, train))
    assert "t.csv: no column for field 'urgent'" in message and "text, tags" in message and "dataset.columns" in message


def test_a_csv_with_another_separator_names_dataset_sep(tmp_path):
    (tmp_path / "semi.csv").write_text("question;answer\n2+2?;4\n3+3?;6\n")
    message = one_line_error(lambda: load("csv", tmp_path / "semi.csv", **QA))
    assert "semi.csv: no column for field 'question'" in message and "use dataset.sep=';'" in message
    assert "dataset.columns" not in message
    (tmp_path / "pipe.csv").write_text("question|answer\n2+2?|4\n3+3?|6\n")
    assert "use dataset.sep='|'" in one_line_error(lambda: load("csv", tmp_path / "pipe.csv", **QA))
    (tmp_path / "tab.csv").write_text("question\tanswer\n2+2?\t4\n3+3?\t6\n")
    assert "tab-separated: name it .tsv" in one_line_error(lambda: load("csv", tmp_path / "tab.csv", **QA))
    (tmp_path / "other.csv").write_text("prompt,answer\nq,a\n")  # another column name: rename it
    assert "dataset.columns='{COLUMN: question}'" in one_line_error(lambda: load("csv", tmp_path / "other.csv", **QA))


def test_an_empty_file_says_it_has_no_rows(tmp_path):
    for name, text in [("empty.csv", ""), ("header.csv", "question,answer\n"), ("empty.jsonl", "\n")]:
        (tmp_path / name).write_text(text)
        message = one_line_error(lambda: load("jsonl", tmp_path / name, **QA))
        assert f"dataset.train_path: {tmp_path / name} has no" in message and "add examples" in message, name
        assert "hold out" not in message


def test_file_and_format_problems_are_one_line(tmp_path, monkeypatch):
    assert "dataset.train_path: file not found" in one_line_error(lambda: load("csv", tmp_path / "nope.csv"))
    (tmp_path / "t.jsonl").write_text('{"text": "a"}\n{broken\n')
    assert "t.jsonl line 2: not valid JSON" in one_line_error(lambda: load("jsonl", tmp_path / "t.jsonl"))
    write_csv(tmp_path / "t.csv", ROWS)
    message = one_line_error(lambda: load("csv", tmp_path / "t.csv", columns=["text"]))
    assert "dataset.columns" in message

    def no_pyarrow(*args, **kwargs):
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_pyarrow)
    (tmp_path / "t.parquet").write_bytes(b"")
    assert "pip install 'promptrl[parquet]'" in one_line_error(lambda: load("parquet", tmp_path / "t.parquet"))


# ---- one file: a fixed held-out test pool; a validation file ------------------------------------------------

def numbered(n):
    return [{"question": f"q{i}", "answer": f"a{i}"} for i in range(n)]


def test_one_file_holds_out_a_fixed_test_pool_that_no_seed_trains_on(tmp_path):
    train = write_csv(tmp_path / "qa.csv", numbered(60))
    ds = load("csv", train, **QA)  # test_path=None: no TypeError, the default test_pool (0.2) is held out
    assert (len(ds.x_train), len(ds.x_test)) == (48, 12)
    held_out = {x.question for x in ds.x_test}
    again = load("csv", train, **QA)
    assert {x.question for x in again.x_test} == held_out  # fixed by pool_seed, not by the run's seed
    assert {x.question for x in load("csv", train, pool_seed=1, **QA).x_test} != held_out
    for seed in range(5):
        tr, val, test = ds.splits(None, 8, 10, seed=seed)
        assert (len(tr), len(val), len(test)) == (40, 8, 10)
        assert not {x.question for x in tr.x + val.x} & held_out and {x.question for x in test.x} <= held_out
    assert len(load("csv", train, test_pool=25, **QA).x_test) == 25  # a count
    assert "test_pool" in one_line_error(lambda: load("csv", train, test_pool=1.5, **QA))
    assert "raise dataset.test_pool" in one_line_error(lambda: ds.splits(None, 8, 20, seed=0))


def test_a_validation_file_gives_the_validation_split(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", numbered(30))
    val = write_jsonl(tmp_path / "val.jsonl", numbered(35)[25:])  # q25..q29 also in train; q30..q34 only here
    test = write_jsonl(tmp_path / "test.jsonl", numbered(40)[33:])  # q33 and q34 are test inputs
    ds = load("jsonl", train, test, val_path=str(val), **QA)
    tr, va, te = ds.splits(None, None, None, seed=0)
    val_questions = {x.question for x in va.x}
    assert val_questions == {f"q{i}" for i in range(25, 33)}  # all of the val file, less the test inputs
    assert {x.question for x in tr.x} == {f"q{i}" for i in range(25)}  # validation inputs leave the train pool
    assert len(te) == 7
    assert len(ds.splits(None, 3, None, seed=0)[1]) == 3
    assert "lower the sizes" in one_line_error(lambda: ds.splits(None, 9, None, seed=0))


# ---- the checkpoint's dataset: same data, same description ---------------------------------------------------

def test_describe_source_tells_data_apart_but_not_paths_to_the_same_file(tmp_path):
    base = {"name": "csv", "train_path": "data/qa.csv", "test_path": None, "train_size": 10, "test_pool": 0.2}
    assert describe_source(base) == "csv train_path=qa.csv"
    assert describe_source({**base, "train_path": str(tmp_path / "qa.csv"), "train_size": 20}) == describe_source(base)
    assert describe_source({**base, "train_path": "data/other.csv"}) != describe_source(base)
    assert describe_source({**base, "name": "jsonl"}) != describe_source(base)
    bbh = {"name": "bbh", "task": "navigate", "path": "../shared/data/bbh"}
    assert describe_source({**bbh, "path": None}) == describe_source(bbh)  # downloaded or local: the same task
    assert describe_source({**bbh, "task": "snarks"}) != describe_source(bbh)


def test_a_checkpoint_keeps_the_keys_that_pick_its_test_examples():
    from promptrl.datasets import adopt_split_keys

    saved = {"name": "csv", "train_path": "a/qa.csv", "test_path": None, "test_pool": 0.1, "pool_seed": 0}
    assert adopt_split_keys(saved, {**saved, "test_pool": 0.2}, given=set()) == {"test_pool": 0.1}
    assert adopt_split_keys(saved, {**saved, "train_path": "b/qa.csv", "test_size": 5}, given=set()) == {}
    assert "dataset.pool_seed=2 differs" in one_line_error(
        lambda: adopt_split_keys(saved, {**saved, "pool_seed": 2}, given={"pool_seed"}))
    # a test file, or other data: nothing held out to keep
    assert adopt_split_keys({**saved, "test_path": "t.csv"}, {**saved, "test_path": "t.csv", "test_pool": 0.5},
                            given={"test_pool"}) == {}
    assert adopt_split_keys(saved, {**saved, "train_path": "other.csv", "test_pool": 0.5}, given={"test_pool"}) == {}
    # a generated dataset follows the run's seed (seed: ${seed}): it is generated as in training
    assert adopt_split_keys({"name": "sentiment", "seed": 0}, {"name": "sentiment", "seed": 5}, given=set()) == \
        {"seed": 0}


# ---- the CLI end to end ---------------------------------------------------------------------------------------

SCRIPTED = ["language_model._target_=promptrl.testing.sentiment_student", "--no-progress"]


def reviews_csv(path, n=60, offset=0):
    ds = datasets.load("sentiment", seed=offset, train_pool=n, test_pool=10)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "label"])
        writer.writerows((x.text, y.answer) for x, y in zip(ds.x_train, ds.y_train))
    return path


def test_cli_trains_on_a_csv_file_split_by_test_size_and_evaluates_its_checkpoint(tmp_path):
    data = reviews_csv(tmp_path / "reviews.csv")
    dataset_args = ["dataset=csv", f"dataset.train_path={data}", "dataset.test_size=10",
                    "dataset.columns={review: text, label: answer}",
                    "dataset.input_data_model=promptrl.datasets.synthetic:Review",
                    "dataset.output_data_model=promptrl.datasets.synthetic:Sentiment"]
    runner = CliRunner()
    result = runner.invoke(app, ["train", "+optimizer=random_few_shot", *dataset_args, "dataset.val_size=8",
                                 "dataset.train_size=12", "nb_runs=1", "epochs=1", "batch_size=4", *SCRIPTED,
                                 f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert len(final["rewards"][0]) == 10 and final["mean"]["reward"] == 1.0
    checkpoint = tmp_path / "run" / "best.program.json"
    assert json.loads(checkpoint.read_text())["metadata"]["dataset"]["name"] == "csv"

    def evaluate(out, *args):
        result = runner.invoke(app, ["evaluate", "--runs", "1", "--checkpoint", str(checkpoint), *dataset_args,
                                     *args, *SCRIPTED, f"hydra.run.dir={tmp_path / out}"])
        assert result.exit_code == 0, result.output
        return (tmp_path / out / "report.md").read_text()

    assert "was trained on dataset" not in evaluate("same")
    other = reviews_csv(tmp_path / "other.csv", offset=1)
    assert "trained on dataset 'csv train_path=reviews.csv columns={review: text, label: answer}', evaluated on " \
           "'csv train_path=other.csv columns=" in evaluate("other", f"dataset.train_path={other}")


REVIEWS = ["dataset=csv", "dataset.columns={review: text, label: answer}",
           "dataset.input_data_model=promptrl.datasets.synthetic:Review",
           "dataset.output_data_model=promptrl.datasets.synthetic:Sentiment"]


def inputs(run_dir, phase) -> set[str]:
    return {json.loads(line)["input"]["text"] for line in (run_dir / f"{phase}_predictions.jsonl").open()}


def train_on_reviews(tmp_path, *args):
    data = reviews_csv(tmp_path / "reviews.csv")
    result = CliRunner().invoke(app, ["train", "+optimizer=random_few_shot", *REVIEWS, f"dataset.train_path={data}",
                                      "dataset.train_size=8", "dataset.val_size=4", "nb_runs=1", "epochs=1",
                                      "batch_size=4", *args, *SCRIPTED, f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    return data, tmp_path / "run" / "best.program.json"


def evaluate_reviews(tmp_path, out, data, checkpoint, *args):
    return CliRunner().invoke(app, ["evaluate", "--runs", "1", "--checkpoint", str(checkpoint), *REVIEWS,
                                    f"dataset.train_path={data}", *args, *SCRIPTED, f"hydra.run.dir={tmp_path / out}"])


def test_cli_evaluate_tests_a_checkpoint_on_the_test_pool_it_held_out(tmp_path):
    data, checkpoint = train_on_reviews(tmp_path, "dataset.test_pool=0.1")  # 6 of 60 held out
    held_out = inputs(tmp_path / "run", "final")
    assert len(held_out) == 6
    # the config's default test_pool (0.2) would hold out 12, six of them trained on: the checkpoint's is used
    result = evaluate_reviews(tmp_path, "eval", data, checkpoint)
    assert result.exit_code == 0, result.output
    assert inputs(tmp_path / "eval", "evaluation") == held_out
    assert "Test split held out as in training: dataset.test_pool=0.1 (the checkpoint's)" in \
        (tmp_path / "eval" / "report.md").read_text()
    # asked for on the command line: refused in one line, naming the key and the fix
    for key, value in (("test_pool", "0.5"), ("pool_seed", "1")):
        result = evaluate_reviews(tmp_path, f"eval_{key}", data, checkpoint, f"dataset.{key}={value}")
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 1 and len(errors) == 1, result.output
        assert f"dataset.{key}={value} differs from the checkpoint's" in errors[0]
        assert f"leave dataset.{key} out" in errors[0]
    # another test file: no held-out pool to keep, any test_pool is fine
    result = evaluate_reviews(tmp_path, "eval_file", data, checkpoint, f"dataset.test_path={data}",
                              "dataset.test_pool=0.5", "dataset.val_size=0")
    assert result.exit_code == 0, result.output


def test_cli_evaluate_warns_when_the_files_examples_changed_since_training(tmp_path):
    data, checkpoint = train_on_reviews(tmp_path)
    result = evaluate_reviews(tmp_path, "same", data, checkpoint)
    assert result.exit_code == 0 and "Warning" not in (tmp_path / "same" / "report.md").read_text()
    with open(data, "a", encoding="utf-8") as f:  # rows appended: the same test_pool holds out other examples
        f.write("A new review.,positive\nAnother one.,negative\n")
    result = evaluate_reviews(tmp_path, "appended", data, checkpoint)
    assert result.exit_code == 0, result.output
    assert "Warning: the checkpoint was trained on other examples of dataset 'csv train_path=reviews.csv" in \
        (tmp_path / "appended" / "report.md").read_text()
    (tmp_path / "elsewhere").mkdir()  # another train file of the same name
    other = reviews_csv(tmp_path / "elsewhere" / "reviews.csv", offset=3)
    result = evaluate_reviews(tmp_path, "elsewhere", other, checkpoint)
    assert "trained on other examples" in (tmp_path / "elsewhere" / "report.md").read_text()


def cli_error(tmp_path, *args) -> str:
    result = CliRunner().invoke(app, ["train", "dataset=csv", *args, *SCRIPTED, f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_cli_a_bad_csv_row_is_one_error_line(tmp_path):
    data = tmp_path / "qa.csv"
    data.write_text("question,answer\nq1,a1\nq2,\nq3,a3\n")
    assert "qa.csv row 3 (the header is row 1): missing field 'answer'" in cli_error(tmp_path, f"dataset.train_path={data}")
    # data models given on the command line replace the default ones (question -> answer), not extend them
    data.write_text("text,answer\nt1,1\nt2,x\n")
    error = cli_error(tmp_path, f"dataset.train_path={data}", "dataset.input_data_model={fields: {text: str}}",
                      "dataset.output_data_model={fields: {answer: int}}")
    assert "qa.csv row 3 (the header is row 1): field 'answer': Input should be a valid integer" in error


# ---- Hugging Face datasets, offline --------------------------------------------------------------------------

@pytest.fixture
def offline_hf(monkeypatch, tmp_path):
    hf = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(hf.config, "HF_HUB_OFFLINE", True, raising=False)
    return hf


def test_hf_loads_local_files_offline_like_the_file_loaders(offline_hf, tmp_path):
    train, test = write_csv(tmp_path / "train.csv", ROWS[:2]), write_csv(tmp_path / "test.csv", ROWS[1:2])
    ds = datasets.load("hf", path="csv", data_files={"train": str(train), "test": str(test)},
                       cache_dir=str(tmp_path / "cache"), input_data_model=INPUT, output_data_model=OUTPUT)
    same = load("csv", train, test)
    assert ds.name == "hf"
    assert dump(ds.x_train) == dump(same.x_train) and dump(ds.y_train) == dump(same.y_train)
    assert dump(ds.y_test) == dump(same.y_test)
    # HF's csv builder reads like pandas ("None" is missing) unless told otherwise through load_kwargs
    texts = write_csv(tmp_path / "texts.csv", [{"question": "None", "answer": "n/a"}, {"question": "q", "answer": "a"}])
    kept = datasets.load("hf", path="csv", data_files=str(texts), test_split=None, test_pool=1,
                         load_kwargs={"keep_default_na": False}, cache_dir=str(tmp_path / "cache"), **QA)
    assert sorted(x.question for x in kept.x_train + kept.x_test) == ["None", "q"]
    one = datasets.load("hf", path="csv", data_files=str(write_csv(tmp_path / "qa.csv", numbered(20))),
                        test_split=None, cache_dir=str(tmp_path / "cache"), **QA)
    assert (len(one.x_train), len(one.x_test)) == (16, 4)
    message = one_line_error(lambda: datasets.load("hf", path="csv", data_files=str(tmp_path / "qa.csv"),
                                                   cache_dir=str(tmp_path / "cache"), **QA))
    assert "no split 'test'" in message and "its splits are train" in message and "test_split=null" in message


def test_hf_class_labels_become_their_names_and_bad_rows_name_the_split(offline_hf, tmp_path):
    features = offline_hf.Features({"sentence": offline_hf.Value("string"),
                                    "label": offline_hf.ClassLabel(names=["negative", "positive"])})
    table = offline_hf.Dataset.from_dict({"sentence": ["bad", "good", "meh"], "label": [0, 1, -1]}, features=features)
    table.to_parquet(str(tmp_path / "sst.parquet"))
    spec = {"input_data_model": {"fields": {"text": "str"}}, "output_data_model": {"fields": {"answer": "str"}}}
    message = one_line_error(lambda: datasets.load(
        "hf", path="parquet", data_files=str(tmp_path / "sst.parquet"), test_split=None, test_pool=1,
        columns={"sentence": "text", "label": "answer"}, cache_dir=str(tmp_path / "cache"), **spec))
    assert "split 'train' row 3: missing field 'answer' (column 'label')" in message  # label -1: no label
    table.select(range(2)).to_parquet(str(tmp_path / "sst.parquet"))
    ds = datasets.load("hf", path="parquet", data_files=str(tmp_path / "sst.parquet"), test_split=None, test_pool=1,
                       columns={"sentence": "text", "label": "answer"}, cache_dir=str(tmp_path / "cache2"), **spec)
    assert sorted(y.answer for y in ds.y_train + ds.y_test) == ["negative", "positive"]


def test_hf_missing_package_or_dataset_is_one_line(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the extra were not installed
    message = one_line_error(lambda: datasets.load("hf", path="csv", data_files="x.csv", **QA))
    assert "pip install 'promptrl[hf]'" in message
    monkeypatch.undo()
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    message = one_line_error(lambda: datasets.load("hf", path="csv", data_files=str(tmp_path / "nope.csv"),
                                                   cache_dir=str(tmp_path / "cache"), **QA))
    assert "hf: cannot load dataset.path='csv'" in message

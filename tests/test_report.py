"""report.md opens with what a reviewer asks first, and says nothing a reader could misread."""

from __future__ import annotations

import enum
import json
from typing import Literal

import pytest
import yaml
from typer.testing import CliRunner

from promptrl.cli import app
from promptrl.data_model import DataModel, Field
from promptrl.experiment.results import aggregate, chance_level, saved_prompts, write_report
from promptrl.metrics import F1Score
from promptrl.rewards import ExactMatch, LMAsJudge

runner = CliRunner()
SCRIPTED = ["language_model._target_=promptrl.testing.sentiment_student", "--no-progress"]
SIZES = ["nb_runs=2", "epochs=2", "batch_size=4", "dataset.train_size=12", "dataset.val_size=8",
         "dataset.test_size=20"]
USAGE = {"wall_time_s": 1.0, "language_models": {}}


class FakeProgram:
    trainable_variables = {"answer": {"instructions": None, "examples": [{"input": {"q": "live"}, "output": {}}]}}


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = runner.invoke(app, ["train", "+optimizer=random_few_shot", *SIZES, *SCRIPTED, f"hydra.run.dir={run_dir}"])
    assert result.exit_code == 0, result.output
    return run_dir


def test_report_opens_with_command_data_reward_optimizer_then_the_result(train_run):
    report = (train_run / "report.md").read_text()
    setup, result = report.index("## Setup"), report.index("## Result")
    assert report.index("Status: **ok**") < setup < result < report.index("## Baseline vs trained")
    head = report[setup:result]
    assert "`promptrl train +optimizer=random_few_shot nb_runs=2 epochs=2" in head  # the command and its overrides
    assert "sentiment: 12 train, 8 validation, 20 test examples" in head
    assert '`ExactMatch(in_mask=["answer"], case_sensitive=true)`' in head and "named `exact_match`" in head
    assert '`f1_score` = `F1Score(in_mask=["answer"])`' in head
    assert "`RandomFewShot(k=3, k_best=10" in head and "2 epochs, batch size 4" in head
    assert "\"trained\" is the checkpoint with the best val_reward" in head
    body = report[result:report.index("## Baseline vs trained")]
    comparison = json.loads((train_run / "comparison.json").read_text())
    low, high = comparison["ci95"]
    assert f"95% bootstrap CI [{low:+.3f}, {high:+.3f}]" in body
    # failed predictions as rates with their denominator, for both arms; never as a score "± std"
    assert "**Failed predictions** (no valid output, e.g. cut at max_tokens; scored 0): baseline 0 of 20 per run " \
           "(0%); trained 0 of 20 per run (0%)." in body
    assert "| failed predictions | 0 of 20 per run (0%) | 0 of 20 per run (0%) |" in body
    assert "| failures |" not in body
    # sentiment's answer is a Literal of 2 choices: the chance line is said, with how it was chosen
    assert "**Chance** (the dashed line in the plots):" in body and "2 choices scores 0.500" in body


def test_report_prompts_are_those_of_the_best_checkpoint(train_run):
    report = (train_run / "report.md").read_text()
    prompts = report[report.index("## Prompts"):]
    assert "From `best.program.json`: the best checkpoint, which the trained runs evaluated." in prompts
    best = json.loads((train_run / "best.program.json").read_text())
    examples = next(n for n in best["nodes"] if n.get("variables"))["variables"]["examples"]
    assert f"Examples ({len(examples)}):" in prompts
    assert all(json.dumps(e["input"]) in prompts for e in examples)


def test_report_of_an_interrupted_run_shows_prompts_a_saved_file_holds(tmp_path):
    from promptrl.builders import generator_program
    from promptrl.datasets import load
    from promptrl.testing import sentiment_student

    dataset = load("sentiment")
    program = generator_program(sentiment_student(), dataset.input_data_model, dataset.output_data_model)
    program.save(tmp_path / "initial.program.json")
    example = {"input": {"text": "saved"}, "output": {"answer": "positive"}}
    program.set_trainable_variables({"answer": {"instructions": None, "examples": [example]}})
    program.save(tmp_path / "best.program.json")
    # the optimizer then moved on: the live program holds examples no file has
    program.set_trainable_variables({"answer": {"instructions": None, "examples": [{**example, "input": {"text": "x"}}]}})
    source, variables = saved_prompts(tmp_path, tmp_path / "best.program.json", evaluated=False, training=True)
    assert source.startswith("`best.program.json`: the best checkpoint so far")
    assert variables["answer"]["examples"] == [example]
    write_report(tmp_path, "t", {"baseline": None}, test_size=4, usage=USAGE, program=program, status="interrupted",
                 prompts=(source, variables))
    report = (tmp_path / "report.md").read_text()
    assert '"saved"' in report and '{"text": "x"}' not in report
    # no checkpoint yet: where training stopped, else the untrained program
    source, _ = saved_prompts(tmp_path, None, evaluated=False, training=True)
    assert source.startswith("`initial.program.json`")


def test_one_run_shows_no_spread_and_failures_are_rates(tmp_path):
    runs = [{"reward": 0.5, "f1_score": 0.5, "failures": 10.5, "infra_failures": 0}]
    result = aggregate("baseline", runs, [1], [[0.0] * 12])
    write_report(tmp_path, "t", {"baseline": result}, test_size=12, usage=USAGE, program=FakeProgram(), status="ok")
    report = (tmp_path / "report.md").read_text()
    assert "| reward | 0.500 |" in report and "±" not in report.split("## Result")[1].split("## Language")[0]
    assert "one run: no spread to show" in report
    assert "| failed predictions | 10.5 of 12 per run (88%) |" in report
    assert "From the program as evaluated." in report and '"live"' in report


def test_program_picture_and_html_report_come_with_every_run(train_run):
    report = (train_run / "report.md").read_text()
    assert report.index("## Setup") < report.index("## Program") < report.index("![Program](program.png)") \
        < report.index("```mermaid") < report.index("## Result")
    assert (train_run / "program.png").stat().st_size > 0 and (train_run / "report.html").stat().st_size > 0
    # the picture shows the state of the checkpoint whose prompts the report shows (3 few-shot examples)
    best = json.loads((train_run / "best.program.json").read_text())
    examples = {n["name"]: len(n["variables"]["examples"]) for n in best["nodes"] if n.get("variables")}
    mermaid = report.split("```mermaid")[1].split("```")[0]
    assert f"{examples['answer']} examples" in mermaid and "flowchart" in mermaid


def test_a_program_that_cannot_be_drawn_costs_one_line_not_the_report(tmp_path):
    write_report(tmp_path, "t", {"baseline": None}, test_size=1, usage=USAGE, program=FakeProgram(), status="ok")
    report = (tmp_path / "report.md").read_text()
    assert "the program's picture could not be drawn" in report and "## Prompts" in report


# ----------------------------------------------------------------------------- chance level


class Label(DataModel):
    answer: Literal["a", "b", "c"] = Field(description="one of three")


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Paint(DataModel):
    colour: Colour = Field(description="a colour")


class Free(DataModel):
    answer: str = Field(description="free text")


def labels(model, values, field="answer"):
    return [model.model_construct(**{field: v}) for v in values]


def test_chance_of_a_choice_field_is_the_majority_class_and_says_1_over_n():
    train = labels(Label, ["a"] * 6 + ["b"] * 3 + ["c"] * 3)
    test = labels(Label, ["a", "b", "c", "a"])
    level = chance_level(ExactMatch(in_mask=["answer"]), Label, train, test)
    assert level["uniform"] == {"choices": 3, "rate": pytest.approx(1 / 3)}
    assert level["majority"]["labels"] == ["a"] and level["value"] == pytest.approx(0.5)  # "a" is 2 of 4 test targets
    assert level["label"] == "majority class 'a' (0.50)"
    paint = chance_level(ExactMatch(), Paint, labels(Paint, [Colour.RED, Colour.BLUE], "colour"),
                         labels(Paint, [Colour.RED], "colour"))
    assert paint["uniform"]["choices"] == 2


def test_chance_of_a_balanced_train_pool_is_the_mean_over_the_tied_labels():
    level = chance_level(ExactMatch(), Label, labels(Label, ["a", "b"] * 3), labels(Label, ["a", "a", "a", "b"]))
    assert level["majority"]["labels"] == ["a", "b"] and level["value"] == pytest.approx((0.75 + 0.25) / 2)


def test_chance_of_a_bbh_like_free_text_field_with_few_labels():
    train = labels(Free, ["(A)", "(B)", "(A)", "(C)", "(A)", "(B)", "(A)", "(B)", "(C)"])
    level = chance_level(ExactMatch(in_mask=["answer"]), Free, train, labels(Free, ["(A)", "(B)"]))
    assert "uniform" not in level and level["value"] == pytest.approx(0.5)


def test_no_chance_line_without_fixed_answers_or_for_other_rewards():
    many = labels(Free, [str(i) for i in range(30)])
    assert chance_level(ExactMatch(), Free, many, many) is None  # e.g. GSM8K numbers
    label_data = labels(Label, ["a", "b", "c"])
    assert chance_level(F1Score(), Label, label_data, label_data) is None
    assert chance_level(LMAsJudge("same answer"), Label, label_data, label_data) is None


# ----------------------------------------------------------------------------- sweep report


def fake_job(root, num, k, val, test, nb_runs=1):
    job = root / str(num)
    job.mkdir(parents=True)
    (job / "overrides.yaml").write_text(yaml.safe_dump(["+optimizer=random_few_shot", f"optimizer.k={k}"]))
    result = {"nb_runs": nb_runs, "runs": [], "mean": {"reward": test, "failures": 0},
              "std": {"reward": 0.0, "failures": 0}}
    (job / "baseline.json").write_text(json.dumps({**result, "mean": {"reward": 0.4, "failures": 0}}))
    (job / "final.json").write_text(json.dumps(result))
    (job / "history.jsonl").write_text(json.dumps({"epoch": 0, "val_reward": 0.3}) + "\n"
                                       + json.dumps({"epoch": 1, "val_reward": val}) + "\n")


def test_sweep_report_plots_by_val_reward_and_shows_no_zero_spread(tmp_path, monkeypatch):
    from promptrl import plots, sweep

    fake_job(tmp_path, 0, 1, val=0.9, test=0.8)
    fake_job(tmp_path, 1, 3, val=0.7, test=0.95)  # the better test score, the worse validation score
    drawn = {}
    monkeypatch.setattr(plots, "plot_sweep", lambda rows, path, **kw: drawn.update(rows=rows, **kw))
    sweep.write_report(tmp_path)
    markdown = (tmp_path / "sweep_report.md").read_text()
    assert "0.800 ± 0.000" not in markdown and "| 0.800 |" in markdown
    assert "Choose an arm by its best `val_reward`" in markdown
    assert [r["best_val_reward"] for r in drawn["rows"]] == [0.9, 0.7]
    assert [r["baseline_reward_mean"] for r in drawn["rows"]] == [0.4, 0.4]
    fig = plots._figure_sweep(drawn["rows"], params=drawn["params"])
    val_ax = fig.axes[0]
    chosen = [b for c in val_ax.containers for b in getattr(c, "patches", []) if b.get_linewidth() == 3]
    assert [b.get_height() for b in chosen] == [0.9]  # k=1, chosen by validation, not k=3 by test

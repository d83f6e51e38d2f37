"""The CLI as users meet it: help, version, one-line user errors, and real runs on the embedded model."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from promptrl import __version__
from promptrl.cli import app

runner = CliRunner()
TINY = ["nb_runs=2", "epochs=1", "dataset.train_size=8", "dataset.val_size=4", "dataset.test_size=4",
        "--no-progress"]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_help_lists_config_groups_and_options():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for expected in ("optimizer", "random_few_shot", "language_model", "local", "dataset", "sentiment"):
        assert expected in result.output


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "dataset=nope"], "dataset/nope"),
        (["train", "+optimizer=nope"], "optimizer/nope"),
        (["train", "no_such_key=1"], "no_such_key"),
        (["train", "dataset=jsonl", "--no-progress"], "dataset.train_path"),
        (["train", "nb_runs=2", "dataset.test_size=100000", "--no-progress"], "lower the sizes"),
        (["evaluate", "--checkpoint", "missing.program.json"], "checkpoint not found"),
        (["evaluate", "--runs", "0"], "nb_runs must be an integer >= 1"),
        # a typo is refused with the nearest key, also when added with + (Hydra would add it, unread)
        (["train", "epoch=3"], "did you mean epochs?"),
        (["train", "+epoch=3"], "did you mean epochs?"),
        (["train", "language_model.modle=x"], "did you mean language_model.model?"),
        (["train", "+optimizer=random_few_shot", "optimizer.kk=4"], "did you mean optimizer.k?"),
        # added with +, a key the class does not take is named with the nearest setting it does
        (["train", "+optimizer=random_few_shot", "+optimizer.kbest=4"], "did you mean optimizer.k_best?"),
        (["train", "+reward.in_maskk=[answer]"], "reward.in_maskk is not a setting of ExactMatch"),
        # a key of a group that is only added: the group to add, not Hydra's `+optimizer.k=1`
        (["train", "-m", "optimizer.k=1,3"], "no optimizer is chosen: add +optimizer=OPTION before it"),
        # an option the command does not have is named, not Hydra's whole argparse usage
        (["train", "--bogus"], "error: unknown option --bogus (see `promptrl train --help`"),
        (["evaluate", "--resume", "outputs/x"], "no run dir outputs/x: pass the run dir a stopped `promptrl evaluate` printed"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, expected, tmp_path):
    result = runner.invoke(app, [*args, f"hydra.run.dir={tmp_path}"])
    assert result.exit_code == 1, result.output
    output = result.output.strip()
    assert "Traceback" not in output
    error_lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0], output
    assert "usage:" not in output


@pytest.mark.integration
def test_train_then_evaluate_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    cmd = [sys.executable, "-m", "promptrl.cli", "train", "+optimizer=random_few_shot", *TINY,
           f"hydra.run.dir={run_dir}"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("config.yaml", "overrides.yaml", "history.jsonl", "history.csv", "baseline.json", "final.json",
                 "best.program.json", "initial.program.json", "usage.json", "report.md", "history.png",
                 "baseline.png", "comparison.png", "baseline_predictions.jsonl"):
        assert (run_dir / name).is_file(), name
    final = json.loads((run_dir / "final.json").read_text())
    assert final["nb_runs"] == 2 and len(final["runs"]) == 2 and {"reward", "f1_score"} <= set(final["mean"])
    assert len(set(final["seeds"])) == 2  # each run has its own seed
    usage = json.loads((run_dir / "usage.json").read_text())["language_models"]["program"]
    # baseline + final runs, training, validations; a request made twice is answered by the run's reply cache
    assert usage["calls"] + usage["cache_hits"] >= 2 * 4 * 2 + 8 + 4 and usage["prompt_tokens"] > 0

    result = runner.invoke(app, ["evaluate", "--runs", "3", "--checkpoint", str(run_dir / "best.program.json"),
                                 "dataset.test_size=4", "--no-progress", f"hydra.run.dir={tmp_path / 'eval'}"])
    assert result.exit_code == 0, result.output
    assert "±" in result.output
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert evaluation["nb_runs"] == 3


def test_the_sweep_example_of_the_help_is_a_command_that_runs(tmp_path):
    example = next(line for line in runner.invoke(app, ["train", "--help"]).output.splitlines() if "Sweep:" in line)
    args = example.split("Sweep:", 1)[1].split("  ")[0].split()
    result = runner.invoke(app, ["train", *args, "--dry-run", f"hydra.sweep.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert result.output.count("dry run - no LM called") == 3
    # a dry-run job is planned, not failed: its row gives the plan's calls
    assert (tmp_path / "sweep_report.md").read_text().count("| planned: dry run: ") == 3


def test_hydra_flags_pass_through():
    result = runner.invoke(app, ["train", "+optimizer=opro", "optimizer.nb_candidates=5", "--cfg", "job"])
    assert result.exit_code == 0, result.output
    assert "nb_candidates: 5" in result.output and "_target_: promptrl.optimizers.OPRO" in result.output
    result = runner.invoke(app, ["evaluate", "--info", "searchpath"])
    assert result.exit_code == 0 and "Config search path" in result.output and "conf" in result.output


def test_a_missing_plugin_names_its_fix():
    from promptrl.cli import _hint, _one_line

    hydra_report = ("Could not load 'hydra/launcher/ray'\n\nConfig search path:\n"
                    "\tprovider=hydra, path=pkg://hydra.conf\n")
    assert _hint(hydra_report, "train") == " (an optional extra: run `make install-ray`)"
    assert "search path" not in _one_line(hydra_report).lower()
    # the Optuna sweeper is built in: missing, it means a broken install, not an extra to add
    optuna_report = "In 'hparams_search/optuna': Could not find 'hydra/sweeper/optuna'\n"
    assert "reinstall promptrl" in _hint(optuna_report, "train") and "extra" not in _hint(optuna_report, "train")
    assert "promptrl train --help" in _hint("Could not find 'dataset/nope'", "train")

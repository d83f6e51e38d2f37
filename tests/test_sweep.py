"""Sweeps: the report from job dirs, and real multiruns (basic and joblib launchers)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptrl.sweep import job_dirs, job_row, write_report


def fake_job(root: Path, num: int, overrides: list[str], reward=None, failed: str | None = None):
    job = root / str(num)
    job.mkdir(parents=True)
    (job / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if failed:
        (job / "FAILED").write_text(failed + "\n\ntraceback...")
        return
    result = {"nb_runs": 2, "runs": [], "mean": {"reward": 0.5, "failures": 0}, "std": {"reward": 0.1, "failures": 0},
              "rewards": [[0.5] * 4, [0.5] * 4]}
    (job / "baseline.json").write_text(json.dumps(result))
    final = {**result, "mean": {"reward": reward, "failures": 1}, "std": {"reward": 0.05, "failures": 0}}
    (job / "final.json").write_text(json.dumps(final))
    (job / "comparison.json").write_text(json.dumps({"reward_difference": reward - 0.5, "ci95": [-0.05, 0.35]}))
    (job / "history.jsonl").write_text('{"epoch": 0, "val_reward": 0.4}\n{"epoch": 1, "val_reward": 0.9}\n')
    (job / "usage.json").write_text(json.dumps({"wall_time_s": 3.0, "language_models": {
        "program": {"calls": 10, "prompt_tokens": 100, "completion_tokens": 5, "cost": 0.01},
        "optimizer": {"calls": 2, "prompt_tokens": 50, "completion_tokens": 5, "cost": 0.02}}}))


def test_report_rows_table_and_heatmap(tmp_path):
    fake_job(tmp_path, 0, ["+optimizer=fewshot_opro", "optimizer.k=1", "optimizer.k_best=2"], reward=0.6)
    fake_job(tmp_path, 1, ["+optimizer=fewshot_opro", "optimizer.k=1", "optimizer.k_best=3"], reward=0.7)
    fake_job(tmp_path, 2, ["+optimizer=fewshot_opro", "optimizer.k=2", "optimizer.k_best=2"], reward=0.8)
    fake_job(tmp_path, 3, ["+optimizer=fewshot_opro", "optimizer.k=2", "optimizer.k_best=3"],
             failed="dataset 'sentiment' has 10 test examples; lower the sizes")
    rows = write_report(tmp_path)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed"]
    assert rows[3]["error"].endswith("lower the sizes")
    assert rows[0]["overrides"] == {"optimizer": "fewshot_opro", "optimizer.k": 1, "optimizer.k_best": 2}
    assert rows[2]["final_reward_mean"] == 0.8 and rows[0]["best_val_reward"] == 0.9
    assert rows[0]["lm_calls"] == 12 and rows[0]["tokens"] == 160 and rows[0]["cost_usd"] == pytest.approx(0.03)
    csv = (tmp_path / "sweep_report.csv").read_text().splitlines()
    assert csv[0].startswith("job,optimizer.k,optimizer.k_best,status") and len(csv) == 5
    markdown = (tmp_path / "sweep_report.md").read_text()
    assert "| 3 | 2 | 3 | failed: dataset 'sentiment'" in markdown and "0.800 ± 0.050" in markdown
    # failed predictions are a rate of the test examples, and the paired difference is in the table
    assert "| 1 of 4 per run (25%) |" in markdown and "| +0.300 [-0.050, +0.350] |" in markdown
    assert (tmp_path / "sweep_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_job_without_optimizer_reports_its_baseline_as_final(tmp_path):
    fake_job(tmp_path, 0, ["+optimizer=none"], reward=0.0)
    (tmp_path / "0" / "final.json").unlink()
    row = job_row(tmp_path / "0")
    assert row["trained"] is False and row["final_reward_mean"] == row["baseline_reward_mean"] == 0.5


def run_sweep(tmp_path, *extra, expect_failed_jobs=2):
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "promptrl.cli", "train", "+optimizer=random_few_shot", "optimizer.k=1,2",
           "dataset.test_size=4,100000", "nb_runs=2", "epochs=1", "dataset.train_size=6", "dataset.val_size=3",
           "--no-progress", f"hydra.sweep.dir={sweep_dir}", *extra, "-m"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    # the sweep ran every job and wrote its report; failed jobs still make the exit status 1
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"error: {expect_failed_jobs} of 4 jobs failed" in done.stderr, done.stderr[-3000:]
    return sweep_dir


@pytest.mark.integration
def test_real_2x2_sweep_reports_every_job_and_survives_failing_jobs(tmp_path):
    sweep_dir = run_sweep(tmp_path)
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    lines = (sweep_dir / "sweep_report.csv").read_text().strip().splitlines()
    assert len(lines) == 5
    rows = {r["job"]: r for r in map(job_row, sorted(p for p in sweep_dir.iterdir() if p.is_dir()))}
    failed = [j for j, r in rows.items() if r["status"] == "failed"]
    assert len(failed) == 2 and all("lower the sizes" in rows[j]["error"] for j in failed)
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == 2 and all(r["lm_calls"] > 0 and r["final_reward_mean"] is not None for r in ok)
    assert (sweep_dir / "sweep_report.png").is_file()


@pytest.mark.integration
def test_joblib_launcher_runs_jobs_in_separate_processes(tmp_path):
    sweep_dir = run_sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    ok = [json.loads((sweep_dir / j / "usage.json").read_text()) for j in "0123" if (sweep_dir / j / "final.json").is_file()]
    assert len(ok) == 2
    assert len({u["pid"] for u in ok}) == 2 and os.getpid() not in {u["pid"] for u in ok}


@pytest.mark.integration
def test_ray_launcher_runs_the_sweep_on_a_local_ray(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="optional extra: make install-ray")
    sweep_dir = run_sweep(tmp_path, "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2")
    rows = write_report(sweep_dir)
    assert sorted(r["status"] for r in rows) == ["failed", "failed", "ok", "ok"]
    pids = {json.loads((sweep_dir / str(r["job"]) / "usage.json").read_text())["pid"] for r in rows if r["status"] == "ok"}
    assert os.getpid() not in pids


def optuna_search(sweep_dir, *extra):
    """`+hparams_search=optuna` through the CLI, on the scripted sentiment model (seconds, not minutes)."""
    cmd = [sys.executable, "-m", "promptrl.cli", "train", "+optimizer=random_few_shot", "+hparams_search=optuna",
           "nb_runs=1", "epochs=1", "dataset.train_size=8", "dataset.val_size=6", "dataset.test_size=4",
           "language_model._target_=promptrl.testing.sentiment_student", "--no-progress",
           f"hydra.sweep.dir={sweep_dir}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})


def test_optuna_search_optimizes_best_val_reward(tmp_path):
    sweep_dir = tmp_path / "optuna"
    done = optuna_search(sweep_dir, "hydra.sweeper.n_trials=3")
    assert done.returncode == 0, done.stderr[-3000:]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer.k", "optimizer.k_best"}
    rows = write_report(sweep_dir)
    assert len(rows) == 3 and best["best_value"] == max(r["best_val_reward"] for r in rows)
    assert best["n_trials"] == 3 and best["n_failed"] == 0
    # each trial's sampled values are what its job ran with
    for trial in best["trials"]:
        overrides = yaml.safe_load((sweep_dir / str(trial["job"]) / "overrides.yaml").read_text())
        assert {f"{k}={v}" for k, v in trial["params"].items()} <= set(overrides)


def test_optuna_search_whose_jobs_all_fail_still_runs_every_trial(tmp_path):
    sweep_dir = tmp_path / "optuna"
    done = optuna_search(sweep_dir, "hydra.sweeper.n_trials=2", "dataset.test_size=100000")
    assert done.returncode == 1 and "2 of 2 jobs failed" in done.stderr, done.stderr[-3000:]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["n_failed"] == 2 and best["best_value"] is None and best["best_params"] == {}


TOY_APP = """
import math, sys
import hydra
from hydra.core.hydra_config import HydraConfig

FAILS = {1: "raise", 2: "none", 3: "nan"}


@hydra.main(config_path=".", config_name="toy", version_base="1.3")
def main(cfg):
    fail = FAILS.get(HydraConfig.get().job.num)
    if fail == "raise":
        raise RuntimeError("boom")
    if fail == "none":
        return None
    if fail == "nan":
        return math.nan
    return -(cfg.x - 0.3) ** 2 + cfg.k / 10 + (cfg.y == "b")


main()
"""

TOY_CONFIG = """
defaults:
  - override hydra/sweeper: optuna
  - _self_
x: 0.0
k: 1
y: a
hydra:
  sweeper:
    n_trials: 7
    n_jobs: 2
    sampler: {_target_: optuna.samplers.TPESampler, seed: 7, n_startup_trials: 2}
    params:
      x: interval(-1, 1)
      k: range(1, 6)
      y: choice(a, b)
"""


def toy_sweep(tmp_path, name: str, *overrides):
    """promptrl's Optuna sweeper on a tiny Hydra app: job 1 raises, job 2 returns None, job 3 NaN."""
    (tmp_path / "app.py").write_text(TOY_APP)
    (tmp_path / "toy.yaml").write_text(TOY_CONFIG)
    sweep_dir = tmp_path / name
    done = subprocess.run([sys.executable, str(tmp_path / "app.py"), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text()), done


def test_optuna_sweeper_records_failed_trials_and_goes_on(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    results, done = toy_sweep(tmp_path, "sweep", f"hydra.sweeper.storage='{storage}'", "hydra.sweeper.study_name=toy")
    logged = done.stdout + done.stderr  # Hydra logs to stdout
    assert "trial 1 (job 1) failed: the job raised RuntimeError: boom" in logged
    assert "trial 2 (job 2) failed: the job returned None, not a number" in logged
    assert "trial 3 (job 3) failed: the job returned nan" in logged
    trials = results["trials"]
    assert [t["job"] for t in trials] == list(range(7)) and results["n_trials"] == 7 and results["n_failed"] == 3
    assert [t["state"] for t in trials] == ["complete", "failed", "failed", "failed", "complete", "complete", "complete"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert results["best_value"] == max(t["value"] for t in complete)
    best = next(t for t in trials if t["job"] == results["best_job"])
    assert best["value"] == results["best_value"] and best["params"] == results["best_params"]
    assert set(results["best_params"]) == {"x", "k", "y"} and results["best_params"]["k"] in range(1, 6)
    assert all(-1 <= t["params"]["x"] <= 1 and t["params"]["y"] in ("a", "b") for t in trials)
    # optuna's own record: the failed jobs are failed trials of the stored study
    study = optuna.load_study(study_name="toy", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "FAIL", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]


def test_optuna_sampler_seed_makes_two_sweeps_propose_the_same_params(tmp_path):
    first, _ = toy_sweep(tmp_path, "first")
    second, _ = toy_sweep(tmp_path, "second")
    other, _ = toy_sweep(tmp_path, "other", "hydra.sweeper.sampler.seed=8")
    params = [t["params"] for t in first["trials"]]
    assert params == [t["params"] for t in second["trials"]] and first["best_value"] == second["best_value"]
    assert params != [t["params"] for t in other["trials"]]


def test_optuna_sweep_syntax_maps_to_optuna_distributions():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydra_plugins.promptrl_optuna_sweeper.optuna_sweeper import search_space

    params, fixed = search_space(["a=choice(x, 'b c', [1,2])", "b=range(1, 10, 3)", "c=interval(0, 1)",
                                  "d=tag(log, interval(1e-4, 1))", "e=int(interval(1, 8))", "+f=3",
                                  "k=choice(1, 2)", "k=4"])
    space = {p.key: p.distribution for p in params}
    assert space == {"a": CategoricalDistribution(["x", "b c", "[1,2]"]), "b": IntDistribution(1, 7, step=3),
                     "c": FloatDistribution(0.0, 1.0), "d": FloatDistribution(1e-4, 1.0, log=True),
                     "e": IntDistribution(1, 8)}
    assert fixed == ["+f=3", "k=4"]  # a plain value given after a sweep of the same key replaces it
    # a sampled value written back as an override parses to that value
    parser = OverridesParser.create()
    a = params[0]
    assert [parser.parse_override(a.override(c)).value() for c in a.distribution.choices] == ["x", "b c", [1, 2]]
    assert parser.parse_override(params[3].override(0.00012)).value() == 0.00012


def test_a_job_stopped_by_its_budget_ended_as_asked_and_the_sweep_succeeds(tmp_path):
    from typer.testing import CliRunner

    from promptrl.cli import app

    sweep_dir = tmp_path / "sweep"
    result = CliRunner().invoke(app, [
        "train", "+optimizer=random_few_shot", "nb_runs=2", "epochs=2", "batch_size=4", "dataset.train_size=8",
        "dataset.val_size=4", "dataset.test_size=6", "budget.max_calls=30,100000",
        "language_model._target_=promptrl.testing.sentiment_student", "--no-progress",
        f"hydra.sweep.dir={sweep_dir}", "-m"])
    assert result.exit_code == 0, result.output  # a budget stop is not a failed job
    rows = [job_row(job) for job in job_dirs(sweep_dir)]
    assert [r["status"] for r in rows] == ["budget_reached", "ok"]
    assert rows[0]["final_reward_mean"] is not None  # its final runs were held back and made
    assert "2 ran to the end" in (sweep_dir / "sweep_report.md").read_text()


def test_report_command_renders_an_existing_sweep_and_rejects_other_dirs(tmp_path):
    from typer.testing import CliRunner

    from promptrl.cli import app

    fake_job(tmp_path, 0, ["optimizer.k=1"], reward=0.6)
    fake_job(tmp_path, 1, ["optimizer.k=2"], reward=0.7)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0 and "2 jobs (2 ran to the end)" in result.output
    assert (tmp_path / "sweep_report.md").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["report", str(empty)])
    assert result.exit_code == 1 and "no job dirs" in result.output


def test_an_evaluate_sweep_job_reports_its_evaluation(tmp_path):
    job = tmp_path / "0"
    job.mkdir()
    (job / "overrides.yaml").write_text(yaml.safe_dump(["seed=3"]))
    (job / "evaluation.json").write_text(json.dumps({"mean": {"reward": 0.4}, "std": {"reward": 0.1}}))
    row = job_row(job)
    assert row["status"] == "ok" and row["final_reward_mean"] == 0.4 and row["trained"] is False


def test_multirun_yaml_secrets_are_masked_and_clean_files_left_as_hydra_wrote_them(tmp_path):
    from promptrl.sweep import redact_multirun_yaml

    secret = tmp_path / "secret.yaml"
    secret.write_text("hydra:\n  overrides:\n    task: ['+language_model.api_key=sk-abc', 'seed=1']\n"
                      "language_model:\n  api_key: sk-abc\n  max_tokens: 64\n")
    redact_multirun_yaml(secret)
    data = yaml.safe_load(secret.read_text())
    assert "sk-abc" not in secret.read_text() and data["language_model"]["max_tokens"] == 64
    assert data["hydra"]["overrides"]["task"] == ["+language_model.api_key=***", "seed=1"]
    clean = tmp_path / "clean.yaml"
    clean.write_text("hydra:\n  overrides:\n    task: [seed=1]   # Hydra's own layout\n")
    redact_multirun_yaml(clean)
    assert clean.read_text() == "hydra:\n  overrides:\n    task: [seed=1]   # Hydra's own layout\n"

"""Sweeps: the report from job dirs, and real multiruns (basic and joblib launchers)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptrl.sweep import job_row, write_report


def fake_job(root: Path, num: int, overrides: list[str], reward=None, failed: str | None = None):
    job = root / str(num)
    job.mkdir(parents=True)
    (job / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if failed:
        (job / "FAILED").write_text(failed + "\n\ntraceback...")
        return
    result = {"nb_runs": 2, "runs": [], "mean": {"reward": 0.5, "failures": 0}, "std": {"reward": 0.1, "failures": 0}}
    (job / "baseline.json").write_text(json.dumps(result))
    final = {**result, "mean": {"reward": reward, "failures": 0}, "std": {"reward": 0.05, "failures": 0}}
    (job / "final.json").write_text(json.dumps(final))
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


@pytest.mark.integration
def test_optuna_search_optimizes_best_val_reward(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="optional extra: make install-optuna")
    sweep_dir = tmp_path / "optuna"
    cmd = [sys.executable, "-m", "promptrl.cli", "train", "+optimizer=random_few_shot", "+hparams_search=optuna",
           "hydra.sweeper.n_trials=2", "nb_runs=1", "epochs=1", "dataset.train_size=4", "dataset.val_size=3",
           "dataset.test_size=2", "--no-progress", f"hydra.sweep.dir={sweep_dir}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr[-3000:]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer.k", "optimizer.k_best"}
    rows = write_report(sweep_dir)
    assert len(rows) == 2 and best["best_value"] == max(r["best_val_reward"] for r in rows)


def test_report_command_renders_an_existing_sweep_and_rejects_other_dirs(tmp_path):
    from typer.testing import CliRunner

    from promptrl.cli import app

    fake_job(tmp_path, 0, ["optimizer.k=1"], reward=0.6)
    fake_job(tmp_path, 1, ["optimizer.k=2"], reward=0.7)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0 and "2 jobs (2 ok)" in result.output
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

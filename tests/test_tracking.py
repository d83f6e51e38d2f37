"""+logger=mlflow: runs and sweeps on the scripted model, read back with MLflow's own client."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from promptrl.cli import app

runner = CliRunner()
SECRET = "sk-tracking-test-0123456789"
SCRIPTED = ["language_model._target_=promptrl.testing.sentiment_student", "--no-progress"]
TINY = ["+optimizer=random_few_shot", "nb_runs=2", "epochs=2", "batch_size=4", "dataset.train_size=8",
        "dataset.val_size=4", "dataset.test_size=6"]
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="MLflow is an optional extra: make install-mlflow")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project dir shared by the tests: creating an MLflow database takes seconds, once."""
    return tmp_path_factory.mktemp("project")


@pytest.fixture
def client(project, monkeypatch):
    """Runs start in `project`, with no MLFLOW_TRACKING_URI: the default store is project/outputs/mlflow.db."""
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'outputs' / 'mlflow.db'}")


def train(run_dir, *args, exit_code=0):
    result = runner.invoke(app, ["train", "+logger=mlflow", *TINY, *SCRIPTED, *args, f"hydra.run.dir={run_dir}"])
    assert result.exit_code == exit_code, result.output
    return result


def run_of(client, run_dir):
    return client.get_run(json.loads((run_dir / "mlflow_run.json").read_text())["run_id"])


@needs_mlflow
def test_a_run_is_logged_with_params_metrics_usage_and_files_and_no_secret(project, client, tmp_path):
    run_dir = project / "run"
    long_note = "a" * 7000  # over MLflow's 6000-character param limit: cut, not a crash
    train(run_dir, f"+language_model.api_key={SECRET}", f"+logger.tags.note={long_note}")
    assert (project / "outputs" / "mlflow.db").is_file()  # the default store, under the project's outputs/
    run = run_of(client, run_dir)
    assert client.get_experiment(run.info.experiment_id).name == "sentiment"  # experiment_name: ${task_name}
    assert run.info.status == "FINISHED" and run.data.tags["promptrl.status"] == "ok"

    params = run.data.params
    assert params["dataset.train_size"] == "8" and params["optimizer._target_"] == "promptrl.optimizers.RandomFewShot"
    assert params["language_model.api_key"] == "***"
    assert len(params["logger.tags.note"]) <= 6000 and "truncated: 7000 characters" in params["logger.tags.note"]

    history = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
               for key in ("val_reward", "reward")}
    lines = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert history["val_reward"] == [(h["epoch"], h["val_reward"]) for h in lines]  # epochs 0 (untrained), 1, 2
    assert [step for step, _ in history["reward"]] == [1, 2]
    assert run.data.metrics["best_val_reward"] == max(h["val_reward"] for h in lines)  # what a sweep is chosen by

    metrics = run.data.metrics
    for phase in ("baseline", "final"):
        result = json.loads((run_dir / f"{phase}.json").read_text())
        assert metrics[f"{phase}_reward_mean"] == result["mean"]["reward"]
        assert metrics[f"{phase}_reward_std"] == result["std"]["reward"]
    usage = json.loads((run_dir / "usage.json").read_text())["language_models"]["program"]
    assert metrics["lm_calls"] == metrics["usage/program/calls"] == usage["calls"] > 0
    assert metrics["tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "config.yaml", "history.jsonl", "best.program.json", "last.program.json", "usage.json",
            "final.json"} <= files
    assert "reply_cache" not in files

    # the secret is nowhere: params, tags, artifacts
    assert not [v for v in [*params.values(), *run.data.tags.values()] if SECRET in v]
    local = client.download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts"))
    leaked = [p for p in map(str, _files(local)) if SECRET.encode() in open(p, "rb").read()]
    assert not leaked


def _files(root):
    for dirpath, _, names in os.walk(root):
        for name in names:
            yield os.path.join(dirpath, name)


def errors(output: str) -> list[str]:
    return [line for line in output.strip().splitlines() if line.startswith("error:")]


@needs_mlflow
def test_a_config_error_is_one_line_and_no_mlflow_run(project, client, monkeypatch):
    mlflow = sys.modules["mlflow"]
    monkeypatch.setitem(sys.modules, "mlflow", None)  # setup checks the config before MLflow is even imported
    run_dir = project / "typo"
    result = train(run_dir, "dataset.test_size=100000", exit_code=1)
    assert len(errors(result.output)) == 1 and "lower the sizes" in errors(result.output)[0], result.output
    assert not (run_dir / "mlflow_run.json").exists()
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert not experiments or not client.search_runs(experiments, f"tags.`promptrl.run_dir` = '{run_dir.resolve()}'")


@needs_mlflow
def test_a_run_failing_after_setup_ends_failed_with_its_reason_numbers_and_files(project, client, monkeypatch):
    from promptrl.experiment import recipes

    evaluations = recipes.run_evaluations

    async def disk_full_at_final(program, split, cfg, phase, *args, **kwargs):
        if phase == "final":
            raise OSError("disk full")
        return await evaluations(program, split, cfg, phase, *args, **kwargs)

    monkeypatch.setattr(recipes, "run_evaluations", disk_full_at_final)
    run_dir = project / "failed"
    train(run_dir, "nb_runs=1", exit_code=1)
    run = run_of(client, run_dir)
    assert run.info.status == "FAILED" and run.data.tags["promptrl.status"] == "failed"
    assert "disk full" in run.data.tags["promptrl.reason"]
    assert {"status.json", "baseline.json", "history.jsonl"} <= {f.path for f in client.list_artifacts(run.info.run_id)}
    metrics = run.data.metrics
    assert metrics["baseline_reward_mean"] == json.loads((run_dir / "baseline.json").read_text())["mean"]["reward"]
    assert "baseline_reward_std" not in metrics  # one run: no spread, not a spread of zero
    assert "best_val_reward" in metrics and "final_reward_mean" not in metrics  # never the baseline as "final"


@needs_mlflow
def test_a_folder_store_is_one_line_naming_the_sqlite_uri(project, client, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = project / "plainpath"
    result = train(project / "folder", f"logger.tracking_uri={store}", exit_code=1)
    assert errors(result.output) == [f"error: mlflow: {store} is a folder store, which MLflow no longer accepts; "
                                     f"use logger.tracking_uri=sqlite:///{store}/mlflow.db"], result.output
    assert not (project / "folder" / "baseline.json").exists()


@needs_mlflow
def test_an_unreachable_server_is_one_line(project, client):
    import socket

    with socket.socket() as free:  # a port nobody listens on
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}"
    result = train(project / "server", f"logger.tracking_uri={url}", exit_code=1)
    assert errors(result.output) == [f"error: MLflow server not reachable at {url}; start it or fix "
                                     "logger.tracking_uri (or $MLFLOW_TRACKING_URI)"], result.output
    assert "urllib3" not in result.output and "Traceback" not in result.output


@needs_mlflow
def test_resume_logs_into_the_same_run_without_repeating_epochs(project, client):
    run_dir = project / "resumed"
    train(run_dir, "budget.max_calls=25", "budget.reserve_final=false")  # stops in the middle of training
    first = run_of(client, run_dir)
    assert first.data.tags["promptrl.status"] == "budget_reached"
    result = runner.invoke(app, ["train", "--resume", str(run_dir), "budget.max_calls=null"])
    assert result.exit_code == 0, result.output
    run = run_of(client, run_dir)
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["promptrl.status"] == "ok" and "final_reward_mean" in run.data.metrics
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_reward")]
    assert steps == [0, 1, 2]


@needs_mlflow
def test_sweep_jobs_nest_under_one_parent_run(project, client):
    sweep_dir = project / "sweep"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, "-m", "promptrl.cli", "train", "+logger=mlflow", "logger.experiment_name=sweep", *TINY,
           "optimizer.k=1,2", *SCRIPTED, f"hydra.sweep.dir={sweep_dir}", "-m"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=project,
                          env={**env, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = client.get_experiment_by_name("sweep")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert json.loads((sweep_dir / "mlflow_run.json").read_text())["run_id"] == parent.info.run_id
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert sorted(r.data.params["optimizer.k"] for r in children) == ["1", "2"]
    assert all(r.info.status == "FINISHED" and "final_reward_mean" in r.data.metrics for r in children)
    assert parent.info.status == "FINISHED"
    assert {"sweep_report.md", "sweep_report.html"} <= {f.path for f in client.list_artifacts(parent.info.run_id)}


@needs_mlflow
def test_a_sweep_stopped_in_a_job_ends_its_parent_run_killed_with_the_report_so_far(project, client, monkeypatch):
    import promptrl.experiment

    real_train, calls = promptrl.experiment.run_train, []

    def second_job_interrupted(*args, **kwargs):  # Ctrl-C while the second job runs
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(promptrl.experiment, "run_train", second_job_interrupted)
    sweep_dir = project / "stopped_sweep"
    result = runner.invoke(app, ["train", "+logger=mlflow", "logger.experiment_name=stopped", *TINY,
                                 "optimizer.k=1,2,3", *SCRIPTED, f"hydra.sweep.dir={sweep_dir}", "-m"])
    assert result.exit_code == 130, result.output
    assert len(calls) == 2  # the third job never started
    runs = client.search_runs([client.get_experiment_by_name("stopped").experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "KILLED"  # not left RUNNING
    report = (sweep_dir / "sweep_report.md").read_text()  # the finished job's numbers are kept
    assert "| 0 | 1 | ok |" in report and "| 1 | 2 | incomplete" in report
    assert "sweep_report.md" in {f.path for f in client.list_artifacts(parent.info.run_id)}


@pytest.mark.parametrize("sweep", [False, True])
def test_missing_mlflow_is_one_line_naming_the_install(tmp_path, monkeypatch, sweep):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` fails, as when it is not installed
    monkeypatch.chdir(tmp_path)  # were it to run anyway, its store would not land in the checkout's outputs/
    extra = ["optimizer.k=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}", "-m"] if sweep else []
    result = runner.invoke(app, ["train", "+logger=mlflow", *TINY, *SCRIPTED, *extra,
                                 f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "make install-mlflow" in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "baseline.json").exists() and not (tmp_path / "sweep" / "0").exists()


class Tracker:
    """Stands for MLflowLogger at the sweep's end: records how its run was closed."""

    def __init__(self):
        self.ended = []

    def end(self, status, reason="", files=None):
        self.ended.append((status, reason, [f.name for f in files]))


def end_sweep(sweep_dir, statuses):
    from omegaconf import OmegaConf

    from promptrl.sweep import SweepReportCallback

    for num, status in enumerate(statuses):
        job = sweep_dir / str(num)
        job.mkdir(parents=True)
        result = {"nb_runs": 2, "mean": {"reward": 0.5}, "std": {"reward": 0.1}}
        (job / "baseline.json").write_text(json.dumps(result))
        (job / "status.json").write_text(json.dumps({"status": status, "reason": f"{status} reason"}))
    callback, tracker = SweepReportCallback(), Tracker()
    callback.tracker = tracker
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}}))
    return tracker.ended


def test_a_sweep_whose_jobs_ran_or_hit_their_budget_closes_ok_with_its_report(tmp_path):
    [(status, reason, files)] = end_sweep(tmp_path, ["ok", "budget_reached"])
    assert (status, reason) == ("ok", "")  # a budget stop is a job that ended as asked, not a failure
    assert {"sweep_report.md", "sweep_report.html", "sweep_report.csv", "sweep_report.png"} <= set(files)
    assert all((tmp_path / name).is_file() for name in files)


def test_a_sweep_with_failed_or_interrupted_jobs_closes_failed(tmp_path):
    [(status, reason, _)] = end_sweep(tmp_path, ["ok", "failed", "interrupted", "budget_reached"])
    assert status == "failed" and reason.startswith("2 of 4 jobs")


def test_a_sweep_whose_report_fails_still_closes_its_run(tmp_path, monkeypatch):
    import promptrl.sweep

    def broken(sweep_dir):
        raise OSError("disk full")

    monkeypatch.setattr(promptrl.sweep, "write_report", broken)
    tracker = Tracker()
    callback = promptrl.sweep.SweepReportCallback()
    callback.tracker = tracker
    (tmp_path / "0").mkdir()
    from omegaconf import OmegaConf

    with pytest.raises(OSError, match="disk full"):
        callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    [(status, reason, _)] = tracker.ended
    assert status == "failed" and "disk full" in reason


def test_run_summary_names_one_run_and_a_run_without_final_runs_honestly():
    from promptrl.experiment.results import run_summary

    one = {"nb_runs": 1, "mean": {"reward": 0.5}, "std": {"reward": 0.0}}
    two = {"nb_runs": 2, "mean": {"reward": 0.7}, "std": {"reward": 0.1}}
    usage = {"wall_time_s": 2.0, "language_models": {
        "program": {"calls": 3, "prompt_tokens": 10, "completion_tokens": 2, "cost": 0.1},
        "optimizer": {"calls": 1, "prompt_tokens": 5, "completion_tokens": 1, "cost": 0.2}}}
    history = [{"epoch": 0, "val_reward": 0.4}, {"epoch": 1, "reward": 0.3, "val_reward": 0.6}]
    numbers = run_summary({"baseline": one, "final": two}, usage=usage, history=history,
                          comparison={"reward_difference": 0.2, "ci95": [0.1, 0.3]})
    assert "baseline_reward_std" not in numbers and numbers["final_reward_std"] == 0.1
    assert numbers["best_val_reward"] == 0.6 and numbers["reward_difference_ci95_high"] == 0.3
    assert (numbers["lm_calls"], numbers["tokens"], numbers["cost_usd"]) == (4, 18, pytest.approx(0.3))
    # no optimizer: the untrained program is the final one; a run stopped before its final runs has none
    assert run_summary({"baseline": two}, status="ok")["final_reward_mean"] == 0.7
    assert "final_reward_mean" not in run_summary({"baseline": two}, status="failed")

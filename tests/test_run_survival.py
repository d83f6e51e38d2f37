"""Runs against a failing provider (a scripted server on loopback): an outage is reported as an
outage - status.json, a non-zero exit, no conclusion drawn from calls that got no answer - and a
flaky provider within the budget still gives an honest result. SIGTERM stops a run gracefully."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from promptrl.cli import app

from fake_openai import fake_openai_server

runner = CliRunner()
SMALL = ["language_model=openai", "language_model.num_retries=1", "language_model.concurrency=2",
         "nb_runs=2", "epochs=1", "dataset.train_size=6", "dataset.val_size=4", "dataset.test_size=10",
         "--no-progress"]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with fake_openai_server() as served:
        yield served


def train(url, run_dir, *extra):
    return runner.invoke(app, ["train", "+optimizer=random_few_shot", *SMALL, f"language_model.api_base={url}",
                               f"hydra.run.dir={run_dir}", *extra])


def read(run_dir, name):
    return json.loads((run_dir / name).read_text())


def run_killed(command: str, args: list[str], run_dir, recorder, after_requests: float) -> None:
    """`promptrl COMMAND ARGS` in a process of its own, SIGKILLed (no handler runs, nothing is tidied
    up) once the server has received `after_requests` requests."""
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"}
    process = subprocess.Popen([sys.executable, "-m", "promptrl.cli", command, *args, f"hydra.run.dir={run_dir}"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(recorder.requests) < after_requests:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_an_always_failing_provider_is_an_outage_not_a_result(server, tmp_path):
    url, recorder = server
    recorder.actions = [{"status": 500, "body": "internal error"}] * 1000
    result = train(url, tmp_path, "language_model.max_consecutive_failures=4")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "looks down: 4 calls in a row failed" in errors[0]
    status = read(tmp_path, "status.json")
    assert status["status"] == "failed" and "looks down" in status["reason"] and status["phase"] == "baseline"
    assert len(recorder.requests) <= 4 * 2 + 2 * 2  # the breaker stopped it: no paying for the rest
    assert not (tmp_path / "comparison.json").exists() and not (tmp_path / "final.json").exists()
    assert "Status: **failed** - language model" in (tmp_path / "report.md").read_text()
    usage = read(tmp_path, "usage.json")["language_models"]["program"]
    assert usage["failures"] >= 4 and usage["retries"] >= 4


def test_an_outage_mid_run_stops_it_without_a_paired_conclusion(server, tmp_path):
    url, recorder = server
    recorder.actions = [{}] * 25 + [{"status": 503}] * 1000  # the baseline passes, then the provider goes down
    result = train(url, tmp_path, "language_model.max_consecutive_failures=1000")
    assert result.exit_code == 1
    status = read(tmp_path, "status.json")
    assert status["status"] == "failed" and "max_failure_rate" in status["reason"]
    assert (tmp_path / "baseline.json").exists() and not (tmp_path / "comparison.json").exists()
    assert "paired difference" not in result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error.endswith(f"once fixed, continue with `promptrl train --resume {tmp_path}` (paid replies are kept)")
    # the provider is back: the run carries on, the baseline it paid for replayed, not paid again
    recorder.actions, paid = [], len(recorder.requests)
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert resumed.exit_code == 0, resumed.output
    assert read(tmp_path, "status.json")["status"] == "ok" and (tmp_path / "comparison.json").exists()
    usage = read(tmp_path, "usage.json")["language_models"]["program"]
    assert usage["cache_hits"] >= 20 and len(recorder.requests) - paid == usage["calls"]  # replayed (same process)


def test_the_resume_hint_can_be_pasted_and_promises_no_replay_without_a_reply_cache(server, tmp_path):
    url, recorder = server
    recorder.actions = [{}] * 25 + [{"status": 503}] * 1000
    run_dir = tmp_path / "my run"
    result = runner.invoke(app, ["train", "+optimizer=random_few_shot", *SMALL, f"language_model.api_base={url}",
                                 "language_model.max_consecutive_failures=1000", "reply_cache=false",
                                 f"hydra.run.dir='{run_dir}'"])
    assert result.exit_code == 1
    [error] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error.endswith(f"once fixed, continue with `promptrl train --resume '{run_dir}'`")  # quoted, no promise
    recorder.actions = []
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert "it kept no replies (reply_cache=false): every call is made again" in resumed.output


def test_a_flaky_provider_within_budget_gives_an_honest_ok(server, tmp_path):
    url, recorder = server
    # The first request gets no answer (no retries here). The runs ask example 0 first, two calls
    # in flight: which run's request arrives first is a race, so the failed run is looked up.
    recorder.actions = [{"status": 503}]
    result = train(url, tmp_path, "max_failure_rate=0.2", "language_model.num_retries=0")
    assert result.exit_code == 0, result.output
    status = read(tmp_path, "status.json")
    [(failed, share)] = status["infra_failures"].items()
    assert status["status"] == "ok" and failed.startswith("baseline run ") and share == "1/10"
    run = int(failed.removeprefix("baseline run ")) - 1
    baseline = read(tmp_path, "baseline.json")
    rewards = baseline["rewards"][run]
    assert baseline["runs"][run]["infra_failures"] == 1 and rewards.count(None) == 1
    assert sum(r["infra_failures"] for r in baseline["runs"]) == 1
    answered = [r for r in rewards if r is not None]
    assert baseline["runs"][run]["reward"] == pytest.approx(sum(answered) / 9)  # over the 9 answered, not 10
    comparison = read(tmp_path, "comparison.json")
    assert comparison["examples"] == 9 and comparison["excluded_examples"] == 1
    assert "1 left out: no answer in some run" in result.output


def test_an_empty_test_split_is_one_line(tmp_path):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"question": f"{i}?", "answer": f"{i}"}) + "\n"
                                                  for i in range(20)))
    (tmp_path / "test.jsonl").write_text("")
    result = runner.invoke(app, [
        "evaluate", "dataset=jsonl", f"dataset.train_path={tmp_path / 'train.jsonl'}",
        f"dataset.test_path={tmp_path / 'test.jsonl'}",
        "language_model._target_=promptrl.testing.sentiment_student", "--no-progress",
        f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith("error:")][0].startswith("error: dataset")
    assert "test.jsonl has no lines; add examples to it" in result.output
    assert "--resume" not in result.output  # refused in setup: nothing to resume, run it again
    assert read(tmp_path / "run", "status.json")["status"] == "failed"


def test_sigterm_stops_a_run_gracefully_and_keeps_its_files(server, tmp_path):
    url, recorder = server
    recorder.delay = lambda text: 0.3  # slow enough to be stopped mid-training
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "promptrl.cli", "train", "+optimizer=random_few_shot", *SMALL,
         f"language_model.api_base={url}", "nb_runs=1", "dataset.test_size=4", "dataset.train_size=16",
         f"hydra.run.dir={tmp_path}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as `cmd &` from a script starts it: SIGINT ignored, so SIGTERM must not lean on it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until training has started
        status = (tmp_path / "status.json").read_text() if (tmp_path / "status.json").exists() else ""
        if '"phase": "fit"' in status and len(recorder.requests) > 4 + 4 + 2:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted" in err
    status = read(tmp_path, "status.json")
    assert status["status"] == "interrupted" and status["phase"] == "fit"
    usage = read(tmp_path, "usage.json")["language_models"]["program"]
    assert usage["calls"] + usage["cancelled"] >= len(recorder.requests) - 1
    assert (tmp_path / "last.program.json").exists() and (tmp_path / "baseline.json").exists()
    assert "Status: **interrupted**" in (tmp_path / "report.md").read_text()


def test_a_call_budget_stops_training_and_keeps_the_final_evaluations(server, tmp_path):
    url, recorder = server
    # baseline: 2 runs x 10 = 20 calls; 30 allowed with 20 held back for the final runs: fit gets 10
    result = train(url, tmp_path, "budget.max_calls=50", "dataset.train_size=16", "epochs=3")
    assert result.exit_code == 0, result.output
    status = read(tmp_path, "status.json")
    assert status["status"] == "budget_reached" and "calls" in status["reason"]
    final = read(tmp_path, "final.json")
    assert final["nb_runs"] == 2 and len(final["rewards"][0]) == 10  # the final runs ran in full
    usage = read(tmp_path, "usage.json")
    program = usage["language_models"]["program"]
    # 20 baseline + 10 fit + 20 final requests (the final ones may be free replays from the reply cache):
    # calls are counted when they start, so the limit is exact.
    assert program["calls"] + program["cache_hits"] == 50 and program["calls"] <= 50
    assert usage["budget"]["limits"] == {"max_calls": 50}
    assert (tmp_path / "last.program.json").exists()
    assert "status: budget_reached" in result.output


def test_a_budget_without_reserve_stops_before_the_final_runs(server, tmp_path):
    url, recorder = server
    result = train(url, tmp_path, "budget.max_calls=25", "budget.reserve_final=false")
    assert result.exit_code == 0, result.output
    assert read(tmp_path, "status.json")["status"] == "budget_reached"
    assert not (tmp_path / "final.json").exists() and (tmp_path / "baseline.json").exists()
    assert read(tmp_path, "usage.json")["language_models"]["program"]["calls"] == 25


@pytest.mark.parametrize("optimizer", ["random_few_shot", "opro"])
def test_a_dry_run_plans_exactly_the_calls_a_run_makes(server, tmp_path, optimizer):
    url, recorder = server
    args = [f"+optimizer={optimizer}", *SMALL, f"language_model.api_base={url}", "epochs=2",
            "optimizer.val_batch_size=3" if optimizer == "opro" else "optimizer.k=2"]
    result = runner.invoke(app, ["train", "--dry-run", *args, f"hydra.run.dir={tmp_path / 'plan'}"])
    assert result.exit_code == 0, result.output
    assert recorder.requests == []  # no LM called
    plan = read(tmp_path / "plan", "plan.json")
    assert "dry run - no LM called" in result.output and str(plan["calls"]["total"]) in result.output
    result = runner.invoke(app, ["train", *args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.exit_code == 0, result.output
    usage = read(tmp_path / "run", "usage.json")["language_models"]
    # Every planned request is made: paid, or answered by the run's reply cache (an identical request).
    made = sum(u["calls"] + u["cache_hits"] for u in usage.values())
    assert plan["calls"]["total"] == made
    assert sum(u["calls"] for u in usage.values()) == len(recorder.requests)
    if optimizer == "opro":
        teacher, scoring = usage["optimizer"], usage["program"]["of_which"]["optimizer_scoring"]
        assert plan["calls"]["optimizer_teacher"] == teacher["calls"] + teacher["cache_hits"] > 0
        assert plan["calls"]["optimizer_scoring"] == scoring["calls"] + scoring["cache_hits"]


@pytest.mark.parametrize("kill_at", [0.15, 0.55, 0.9])  # in the baseline, mid-training, in the final runs
def test_resume_after_sigkill_ends_as_an_uninterrupted_run_and_pays_nothing_twice(server, tmp_path, kill_at):
    url, recorder = server
    recorder.delay = lambda text: 0.05
    args = ["+optimizer=fewshot_opro", *SMALL, f"language_model.api_base={url}", "epochs=2", "dataset.train_size=12",
            "optimizer.val_batch_size=3"]
    # The same run uninterrupted, for reference.
    whole = runner.invoke(app, ["train", *args, f"hydra.run.dir={tmp_path / 'whole'}"])
    assert whole.exit_code == 0, whole.output
    paid_whole = len(recorder.requests)
    recorder.requests.clear()
    run_dir = tmp_path / "killed"
    run_killed("train", args, run_dir, recorder, paid_whole * kill_at)
    assert read(run_dir, "status.json")["status"] == "running"
    paid_before = len(recorder.requests)
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert read(run_dir, "status.json")["status"] == "ok"
    for name in ("baseline.json", "final.json", "comparison.json", "history.jsonl", "best.program.json",
                 "last.program.json"):
        assert (run_dir / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    usage = read(run_dir, "usage.json")["language_models"]
    assert sum(u["cache_hits"] for u in usage.values()) > 0
    # The whole bill survives the crash: what was paid before it is reported as replayed.
    whole_usage = read(tmp_path / "whole", "usage.json")["language_models"]
    for role, u in usage.items():
        assert u["cost"] + u["replayed_cost"] >= whole_usage[role]["cost"] - 1e-9, role
    # Every call paid before the kill was replayed from the cache (at most the ones in flight are paid again).
    assert len(recorder.requests) <= paid_whole + 2 * 2
    assert len(recorder.requests) - paid_before == sum(u["calls"] for u in usage.values())


def test_resume_refuses_a_finished_run(server, tmp_path):
    url, _ = server
    assert train(url, tmp_path).exit_code == 0
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 1 and "nothing to resume" in result.output


def test_a_per_role_budget_caps_the_optimizers_teacher(server, tmp_path):
    url, recorder = server
    result = runner.invoke(app, ["train", "+optimizer=opro", *SMALL, f"language_model.api_base={url}", "epochs=2",
                                 "optimizer.val_batch_size=3", "+budget.roles.optimizer.max_calls=3",
                                 f"hydra.run.dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    status = read(tmp_path, "status.json")
    assert status["status"] == "budget_reached" and "for the optimizer model" in status["reason"]
    usage = read(tmp_path, "usage.json")
    assert usage["language_models"]["optimizer"]["calls"] == 3
    assert (tmp_path / "final.json").exists()  # the program's own budget was not touched: final runs ran


def test_a_resumed_run_keeps_its_budget_and_replays_invalid_replies_as_they_were(server, tmp_path):
    url, recorder = server
    recorder.actions = [{"content": "not json"}]  # the first reply fails validation: a replay must fail it too
    recorder.delay = lambda text: 0.05
    args = ["+optimizer=random_few_shot", *SMALL, f"language_model.api_base={url}", "epochs=3",
            "dataset.train_size=12", "budget.max_calls=44", "language_model.concurrency=1"]
    run_killed("train", args, tmp_path, recorder, 12)  # in the baseline
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert resumed.exit_code == 0, resumed.output
    assert read(tmp_path, "status.json")["status"] == "budget_reached"
    assert len(recorder.requests) <= 44 + 1  # the budget holds across the crash (one call was in flight)
    assert read(tmp_path, "baseline.json")["runs"][0]["failures"] == 1  # replayed as it was: invalid
    usage = read(tmp_path, "usage.json")["language_models"]["program"]
    assert usage["replayed_calls"] > 0 and usage["calls"] + usage["replayed_calls"] <= 44 + 1


def test_resume_refuses_what_it_cannot_resume(server, tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 1 and "nothing to resume" in result.output
    url, recorder = server  # an evaluate run stopped by an outage: run again, not resumed as if it trained
    recorder.actions = [{"status": 500, "body": "internal error"}] * 100
    evaluated = tmp_path / "evaluated"
    result = runner.invoke(app, ["evaluate", "language_model=openai", "nb_runs=1", "dataset.test_size=4", "--no-progress",
                                 f"language_model.api_base={url}", "language_model.num_retries=0",
                                 "language_model.max_consecutive_failures=2", f"hydra.run.dir={evaluated}"])
    assert result.exit_code == 1 and read(evaluated, "status.json")["status"] == "failed"
    result = runner.invoke(app, ["train", "--resume", str(evaluated)])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert f"is a `promptrl evaluate` run, not a `promptrl train` run: resume it with `promptrl evaluate --resume" \
        in errors[0]
    # the provider is back: the evaluation resumes in place and ends ok
    recorder.actions = []
    result = runner.invoke(app, ["evaluate", "--resume", str(evaluated)])
    assert result.exit_code == 0, result.output
    assert read(evaluated, "status.json")["status"] == "ok" and (evaluated / "evaluation.json").exists()


def test_an_evaluate_run_killed_mid_way_resumes_and_pays_nothing_twice(server, tmp_path):
    url, recorder = server
    recorder.delay = lambda text: 0.05
    args = ["language_model=openai", f"language_model.api_base={url}", "language_model.concurrency=2",
            "language_model.temperature=0.7", "nb_runs=2", "dataset.test_size=12", "--no-progress"]
    whole = runner.invoke(app, ["evaluate", *args, f"hydra.run.dir={tmp_path / 'whole'}"])
    assert whole.exit_code == 0, whole.output
    paid_whole = len(recorder.requests)
    recorder.requests.clear()
    run_dir = tmp_path / "killed"
    run_killed("evaluate", args, run_dir, recorder, paid_whole // 2)
    paid_before = len(recorder.requests)
    assert 0 < paid_before < paid_whole and not (run_dir / "evaluation.json").exists()
    resumed = runner.invoke(app, ["evaluate", "--resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert read(run_dir, "status.json")["status"] == "ok"
    for name in ("evaluation.json", "evaluation_predictions.jsonl"):
        assert (run_dir / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    usage = read(run_dir, "usage.json")["language_models"]["program"]
    assert usage["replayed_calls"] >= paid_before - 2  # at most the calls in flight at the kill are paid twice
    assert len(recorder.requests) - paid_before == usage["calls"]
    assert usage["calls"] + usage["replayed_calls"] == paid_whole


def test_an_interrupted_evaluation_says_how_to_resume_it(server, tmp_path):
    url, recorder = server
    recorder.delay = lambda text: 0.3
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "promptrl.cli", "evaluate", "language_model=openai", f"language_model.api_base={url}",
         "nb_runs=1", "dataset.test_size=20", "--no-progress", f"hydra.run.dir={tmp_path}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(recorder.requests) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert f"continue with `promptrl evaluate --resume {tmp_path}`" in err
    assert read(tmp_path, "status.json")["status"] == "interrupted"


def test_a_sweep_job_stopped_by_an_outage_says_how_to_resume_it(server, tmp_path):
    url, recorder = server
    recorder.actions = [{}] * 25 + [{"status": 503}] * 1000  # the baseline passes, then the provider goes down
    result = runner.invoke(app, ["train", "-m", "+optimizer=random_few_shot", *SMALL, f"language_model.api_base={url}",
                                 "language_model.max_consecutive_failures=1000", "optimizer.k=2",
                                 f"hydra.sweep.dir={tmp_path}"])
    assert result.exit_code == 1
    job = tmp_path / "0"
    hint = f"once fixed, continue with `promptrl train --resume {job}` (paid replies are kept)"
    assert (job / "FAILED").read_text().splitlines()[0].endswith(hint)
    assert hint in (tmp_path / "sweep_report.md").read_text()
    recorder.actions, paid = [], len(recorder.requests)
    resumed = runner.invoke(app, ["train", "--resume", str(job)])
    assert resumed.exit_code == 0, resumed.output
    usage = read(job, "usage.json")["language_models"]["program"]
    assert usage["cache_hits"] >= 20 and len(recorder.requests) - paid == usage["calls"]  # replayed (same process)

"""Test accuracy of every promptrl optimizer on BIG-Bench-Hard tasks at the same LM-call budget,
with the embedded SmolLM2-135M model, beside DSPy's optimizers when a DSPy install is given.

    make bench-quality                       (python bench/quality.py [--dspy-python .venv-dspy/bin/python])
    python bench/quality.py --quick          (one task, tiny splits: a smoke run of a few minutes)
    python bench/quality.py --tasks hyperbaton,navigate --arms zero_shot,random_few_shot --runs 3

One llama.cpp OpenAI-compatible server (llama_cpp.server, the embedded GGUF file, loopback) serves
every arm, so promptrl and DSPy call the same model with the same JSON-schema constraint (llama.cpp's
`{"type": "json_object", "schema": ...}` form of the answer's data model) and the same sampling.

promptrl arms run through the real CLI, one run dir each under --work-dir:
`promptrl train dataset=bbh dataset.task=T +optimizer=X nb_runs=R budget.max_calls=...`; the numbers
are read from the run dir (baseline.json / final.json, comparison.json, usage.json, history.jsonl).
zero_shot is the run without an optimizer. Every trained arm gets the same budget: training may start
at most --budget calls (program and optimizer models together; `budget.max_calls` = the baseline's
calls + what `reserve_final` holds back for the final runs + --budget), and the calls it really made are
reported. Its comparison.json is the paired difference against its own baseline runs, which are the
zero-shot program at the same run seeds on the same test split: the CI against zero-shot.

DSPy arms (bench/dspy_arms.py under --dspy-python, which never imports promptrl) get the splits as a
JSON file written here, so train/val/test are the same examples; their paired CI is against DSPy's
own zero-shot program (its prompt format is not promptrl's). DSPy optimizers take no call budget
except GEPA (max_metric_calls = --budget): the calls they made are reported.

Writes bench/results/quality.md (+ .json of the raw numbers; --quick: quality_quick.*).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = (REPO / ".." / "shared" / "data" / "bbh").resolve()

# Chosen by a zero-shot vs fixed 3-shot measurement of the embedded model (20-30 test examples per task,
# bench/results/README.md): zero-shot it is at or near 0% (it answers in the wrong form) and 3 examples
# lift it to 0.25-0.65; short inputs keep a call near a second. causal_judgement (0.05 -> 0.55) was left
# out for its long inputs (median 889 characters, 3-10x slower per call); date_understanding has six options.
DEFAULT_TASKS = ["hyperbaton", "boolean_expressions", "sports_understanding", "navigate", "web_of_lies",
                 "date_understanding"]
PROMPTRL_ARMS = ["zero_shot", "random_few_shot", "fewshot_opro", "textgrad", "mipro", "gepa"]
OPTIONAL_ARMS = {"mipro", "gepa"}  # run when conf/optimizer/<arm>.yaml exists
DSPY_ARMS = ["zero_shot", "labeled_few_shot", "bootstrap_few_shot", "mipro_v2", "gepa"]
MODEL_NAME = "smollm2-135m"
# The program's model: temperature as conf/language_model/local.yaml; 32 tokens hold any answer of these tasks
# in its JSON object (a zero-shot reply that rambles past them is a failed prediction instead of a wrong one).
PROGRAM_LM = {"temperature": 0.3, "max_tokens": 32}
TEACHER_LM = {"temperature": 0.7, "max_tokens": 256}  # the optimizers' model (promptrl's TEACHER_DEFAULTS)
# budget: training calls per arm. One epoch at the full sizes costs at most (promptrl train --dry-run):
# random_few_shot 100, mipro 274, textgrad 280, gepa 315, fewshot_opro 350 - so 400 gives every optimizer
# at least one validated epoch (a budget stop before the first end-of-epoch validation keeps the
# untrained program) and random_few_shot its four epochs. Quick checks that every arm runs end to end.
SIZES = {"full": {"train": 40, "val": 30, "test": 100, "runs": 3, "budget": 400, "epochs": 4},
         "quick": {"train": 6, "val": 4, "test": 6, "runs": 2, "budget": 40, "epochs": 1}}
QUICK_TASK = "hyperbaton"


# ---- the llama.cpp server ------------------------------------------------------------------------------------

class Server:
    """llama_cpp.server with the embedded model on a free loopback port; its access log counts the calls."""

    def __init__(self, log: Path, n_ctx: int):
        from promptrl.engine.transports import local_model_path

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        threads = str(os.cpu_count() or 1)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", local_model_path("local/smollm2-135m", None),
                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", threads,
                 "--n_threads_batch", threads], stdout=out, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(self.url + "/models", timeout=2).read()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    sys.exit(f"llama_cpp.server did not start (needs llama-cpp-python[server]: make install):\n"
                             f"{log.read_text()[-2000:]}")
                time.sleep(0.3)

    def calls(self) -> int:
        """Chat completions the server has answered so far (any status)."""
        return self.log.read_text(errors="replace").count('"POST /v1/chat/completions')

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def child_env() -> dict:
    """The environment of the arms: no provider key reaches the loopback server, no price-map download."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


# ---- promptrl arms ---------------------------------------------------------------------------------------------

def promptrl_command() -> list[str]:
    script = Path(sys.executable).parent / "promptrl"
    return [str(script)] if script.exists() else [shutil.which("promptrl") or "promptrl"]


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def train_wall_from_log(log: Path) -> float | None:
    """Seconds between the end of the last baseline run and the next log line (the end of training)."""
    if not log.exists():
        return None
    stamps = []
    for line in log.read_text(errors="replace").splitlines():
        match = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", line)
        if match:
            stamps.append((datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"), line))
    last_baseline = max((i for i, (_, line) in enumerate(stamps) if "baseline run" in line), default=None)
    if last_baseline is None or last_baseline + 1 >= len(stamps):
        return None
    return round((stamps[last_baseline + 1][0] - stamps[last_baseline][0]).total_seconds(), 1)


def run_promptrl_arm(arm: str, task: str, args, server: Server, run_dir: Path) -> dict:
    trained = arm != "zero_shot"
    eval_calls = args.runs * args.test  # one phase of test runs (one call per example and run)
    overrides = [
        "dataset=bbh", f"dataset.task={task}", f"dataset.path={args.data}", f"dataset.train_size={args.train}",
        f"dataset.val_size={args.val}", f"dataset.test_size={args.test}", f"dataset.test_pool={args.test_pool}",
        "language_model=openai", f"language_model.api_base={server.url}", f"language_model.model=openai/{MODEL_NAME}",
        f"language_model.temperature={PROGRAM_LM['temperature']}", f"language_model.max_tokens={PROGRAM_LM['max_tokens']}",
        "language_model.concurrency=1", "language_model.structured_output=json_object_schema",
        "language_model.timeout=300", f"nb_runs={args.runs}", f"seed={args.seed}", f"epochs={args.epochs}",
        f"task_name=bench_quality_{task}", f"hydra.run.dir={run_dir}",
        # every call paid and counted: no reply replayed from the run's cache (a final run of an unchanged
        # program would otherwise replay the baseline's replies and hide its calls)
        "reply_cache=false",
    ]
    if trained:  # training may start --budget calls; the baseline's and the final runs' calls come on top
        overrides += [f"+optimizer={arm}", f"budget.max_calls={2 * eval_calls + args.budget}", "budget.reserve_final=true"]
    before, started = server.calls(), time.perf_counter()
    done = subprocess.run([*promptrl_command(), "train", "--no-progress", *overrides], cwd=REPO, env=child_env(),
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if run_dir.exists():
        (run_dir / "bench_stdout.txt").write_text(done.stdout + done.stderr)
    status = read_json(run_dir / "status.json") or {}
    result = {"system": "promptrl", "arm": arm, "run_dir": str(run_dir), "exit_code": done.returncode,
              "status": status.get("status", "failed"), "reason": status.get("reason") or
              (done.stderr.strip().splitlines() or [""])[-1][:300], "wall_s": round(wall, 1),
              "server_calls": server.calls() - before}
    phase = read_json(run_dir / ("final.json" if trained else "baseline.json"))
    usage = read_json(run_dir / "usage.json")
    if phase is None or usage is None:
        return result
    baseline = read_json(run_dir / "baseline.json")
    calls = {role: u["calls"] for role, u in usage["language_models"].items()}
    total = sum(calls.values())
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()] \
        if (run_dir / "history.jsonl").exists() else []
    validated = [h for h in history if h.get("val_reward") is not None]
    best = max(validated, key=lambda h: h["val_reward"]) if validated else None
    result.update({
        "accuracy": [r["reward"] for r in phase["runs"]], "failures": [r.get("failures", 0) for r in phase["runs"]],
        "rewards": phase["rewards"], "seeds": phase["seeds"],
        "baseline_accuracy": [r["reward"] for r in baseline["runs"]] if baseline else None,
        "comparison": read_json(run_dir / "comparison.json"),
        "calls": calls, "total_calls": total, "train_calls": total - 2 * eval_calls if trained else 0,
        "of_which": {role: u.get("of_which") for role, u in usage["language_models"].items() if u.get("of_which")},
        "tokens": sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage["language_models"].values()),
        "train_wall_s": train_wall_from_log(run_dir / "promptrl.log") if trained else 0.0,
        "run_wall_s": usage.get("wall_time_s"),
        "epochs_done": max((h["epoch"] for h in history), default=0),
        "best_epoch": best["epoch"] if best else None,  # 0: the untrained program was kept
    })
    return result


def check_test_split(run_dir: Path, test: list[dict]) -> None:
    """The CLI drew the same test split as the splits file (same loader, sizes and seed)."""
    file = run_dir / "baseline_predictions.jsonl"
    if not file.exists():
        return
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    drawn = [r["input"]["question"] for r in sorted((r for r in rows if r["run"] == 0), key=lambda r: r["index"])]
    if drawn != [t["question"] for t in test]:
        sys.exit(f"the CLI drew another test split than the splits file ({file}); the comparison would be unpaired")


# ---- DSPy arms ------------------------------------------------------------------------------------------------

def write_splits(task: str, args, path: Path) -> list[dict]:
    from promptrl import datasets
    from promptrl.seeding import derive_seed

    dataset = datasets.load("bbh", task=task, path=str(args.data), test_pool=args.test_pool)
    train, val, test = dataset.splits(args.train, args.val, args.test, seed=args.seed)

    def rows(split):
        return [{"question": x.question, "answer": y.answer} for x, y in zip(split.x, split.y)]

    splits = {"task": task, "seed": args.seed, "run_seeds": [derive_seed(args.seed, "run", i) for i in range(args.runs)],
              "model_name": MODEL_NAME, "language_model": PROGRAM_LM, "teacher": TEACHER_LM,
              "answer_schema": dataset.output_data_model.model_json_schema(),
              "train": rows(train), "val": rows(val), "test": rows(test)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(splits, indent=1))
    return splits["test"]


def run_dspy_arm(arm: str, args, server: Server, splits_file: Path, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"dspy_{arm}.json"
    before, started = server.calls(), time.perf_counter()
    done = subprocess.run([args.dspy_python, str(HERE / "dspy_arms.py"), "--splits", str(splits_file),
                           "--api-base", server.url, "--arm", arm, "--budget", str(args.budget), "--out", str(out)],
                          cwd=REPO, env=child_env(), capture_output=True, text=True)
    (out_dir / f"dspy_{arm}.log").write_text(done.stdout + done.stderr)
    result = {"system": "dspy", "arm": arm, "exit_code": done.returncode, "wall_s": round(time.perf_counter() - started, 1),
              "server_calls": server.calls() - before, "status": "ok" if done.returncode == 0 else "failed",
              "reason": "" if done.returncode == 0 else (done.stderr.strip().splitlines() or [""])[-1][:300]}
    if done.returncode == 0 and out.exists():
        raw = json.loads(out.read_text())
        result.update(raw)
        result["total_calls"] = raw["train_calls"] + raw["test_calls"]
    return result


def add_dspy_comparisons(results: list[dict], seed: int) -> None:
    """DSPy arms against DSPy's zero-shot program: paired by run and example, promptrl's bootstrap CI."""
    from promptrl.experiment.results import paired_comparison

    zero = next((r for r in results if r["system"] == "dspy" and r["arm"] == "zero_shot" and "rewards" in r), None)
    for r in results:
        if r["system"] == "dspy" and r["arm"] != "zero_shot" and "rewards" in r and zero:
            r["comparison"] = paired_comparison({"rewards": zero["rewards"]}, {"rewards": r["rewards"]}, seed=seed)


# ---- the table --------------------------------------------------------------------------------------------------

def mean_std(values) -> str:
    if not values:
        return "-"
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def delta(r: dict) -> str:
    c = r.get("comparison")
    if r["arm"] == "zero_shot":
        return "(reference)"
    if not c or c.get("reward_difference") is None:
        return "-"
    low, high = c["ci95"]
    return f"{c['reward_difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def fmt(value, spec="") -> str:
    return "-" if value is None else format(value, spec)


def best_arms(results: list[dict], seed: int) -> list[str]:
    """The issue's question, per task: promptrl's best trained arm against DSPy's best arm (by mean test accuracy)."""
    def best(rows):
        rows = [r for r in rows if r.get("accuracy") and r["arm"] != "zero_shot"]
        return max(rows, key=lambda r: statistics.fmean(r["accuracy"]), default=None)

    tasks = list(dict.fromkeys(r["task"] for r in results))
    pairs = [(task, best([r for r in results if r["task"] == task and r["system"] == "promptrl"]),
              best([r for r in results if r["task"] == task and r["system"] == "dspy"])) for task in tasks]
    if not any(ours and theirs for _, ours, theirs in pairs):
        return []
    from promptrl.experiment.results import paired_comparison

    lines = ["", "Best trained arm of each system per task (mean test accuracy; train calls), and promptrl's minus "
             "DSPy's: paired on the same test examples, with its 95% bootstrap CI:", "",
             "| task | promptrl best | DSPy best | difference [95% CI] |", "|---|---|---|---|"]
    accuracy = lambda r: statistics.fmean(r["accuracy"])  # noqa: E731
    for task, ours, theirs in pairs:
        if ours and theirs:
            paired = paired_comparison({"rewards": theirs["rewards"]}, {"rewards": ours["rewards"]}, seed=seed)
            low, high = paired["ci95"]
            lines.append(f"| {task} | {ours['arm']} {accuracy(ours):.3f} ({fmt(ours.get('train_calls'))}) | "
                         f"{theirs['arm']} {accuracy(theirs):.3f} ({fmt(theirs.get('train_calls'))}) | "
                         f"{paired['reward_difference']:+.3f} [{low:+.3f}, {high:+.3f}] |")
    both = [(o, t) for _, o, t in pairs if o and t]
    if len(both) > 1:
        lines.append(f"| mean | {statistics.fmean(accuracy(o) for o, _ in both):.3f} | "
                     f"{statistics.fmean(accuracy(t) for _, t in both):.3f} | "
                     f"{statistics.fmean(accuracy(o) - accuracy(t) for o, t in both):+.3f} |")
    return lines


def table(results: list[dict], args, dspy_version: str | None, command: str | None = None) -> str:
    command = command or f"python bench/quality.py {' '.join(sys.argv[1:])}"
    lines = ["# Quality benchmark: BIG-Bench-Hard, SmolLM2-135M-Instruct (embedded, llama.cpp server)", "",
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · `{command}` · "
             f"splits train {args.train} / val {args.val} / test {args.test} (seed {args.seed}) · {args.runs} test runs "
             f"per arm · training budget {args.budget} LM calls · program model temperature "
             f"{PROGRAM_LM['temperature']}, max_tokens {PROGRAM_LM['max_tokens']}; optimizers' model temperature "
             f"{TEACHER_LM['temperature']}, max_tokens {TEACHER_LM['max_tokens']}"
             + (f" · DSPy {dspy_version}" if dspy_version else ""), "",
             "Test accuracy (exact match) mean ± std over runs; Δ = paired difference against the zero-shot program "
             "(promptrl arms: promptrl's zero-shot; DSPy arms: DSPy's), per test example averaged over runs, with its "
             "95% bootstrap CI over examples. Calls: LM calls made in training (program + optimizer model) and in "
             "all (promptrl arms: baseline + training + final runs; DSPy arms: training + test runs). Wall: "
             "training / the whole arm.", "",
             "| task | system | arm | test accuracy | Δ vs zero-shot [95% CI] | train calls | total calls | "
             "wall train / all (s) | status |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        status = r["status"] + (f": {r['reason'][:80]}" if r["status"] == "failed" and r.get("reason") else "")
        if r["system"] == "promptrl" and r.get("best_epoch") == 0 and r["arm"] != "zero_shot":
            status += " (kept the untrained program)"
        train_wall = r.get("train_wall_s")
        lines.append(f"| {r['task']} | {r['system']} | {r['arm']} | {mean_std(r.get('accuracy'))} | {delta(r)} | "
                     f"{fmt(r.get('train_calls'))} | {fmt(r.get('total_calls'))} | "
                     f"{fmt(train_wall, '.0f')} / {r['wall_s']:.0f} | {status} |")
    tasks = list(dict.fromkeys(r["task"] for r in results))
    if len(tasks) > 1:
        lines += ["", f"Mean over the {len(tasks)} tasks (accuracy averaged over each task's runs):", "",
                  "| system | arm | mean test accuracy | mean Δ vs zero-shot | mean train calls |", "|---|---|---|---|---|"]
        for system, arm in dict.fromkeys((r["system"], r["arm"]) for r in results):
            rows = [r for r in results if (r["system"], r["arm"]) == (system, arm) and r.get("accuracy")]
            if len(rows) < len(tasks):
                lines.append(f"| {system} | {arm} | - ({len(tasks) - len(rows)} task(s) without a result) | - | - |")
                continue
            diffs = [r["comparison"]["reward_difference"] for r in rows
                     if r.get("comparison") and r["comparison"].get("reward_difference") is not None]
            lines.append(f"| {system} | {arm} | {statistics.fmean(statistics.fmean(r['accuracy']) for r in rows):.3f} | "
                         + (f"{statistics.fmean(diffs):+.3f}" if len(diffs) == len(rows) else "-")
                         + f" | {statistics.fmean(r['train_calls'] for r in rows):.0f} |")
    lines += best_arms(results, args.seed)
    return "\n".join(lines) + "\n"


SAME_SETTINGS = ("train", "val", "test", "runs", "budget", "epochs", "seed", "test_pool", "data")


def merge(files: list[Path], out_md: Path) -> None:
    """One table from the result files of several runs with the same settings (e.g. tasks run one at a time)."""
    raws = []
    for file in files:
        try:
            raws.append(json.loads(file.read_text()))
        except (OSError, ValueError) as error:
            sys.exit(f"--merge: cannot read {file} ({error}); pass the .json written beside a quality table")
    first = raws[0]["settings"]
    for file, raw in zip(files[1:], raws[1:]):
        differ = [k for k in SAME_SETTINGS if raw["settings"].get(k) != first.get(k)]
        if differ:
            theirs = ", ".join(f"{k}={raw['settings'].get(k)}" for k in differ)
            ours = ", ".join(f"{k}={first.get(k)}" for k in differ)
            sys.exit(f"--merge: {file} was run with other settings ({theirs} vs {ours}); merge only runs of one setting")
    results = [r for raw in raws for r in raw["results"]]
    args = argparse.Namespace(**first)
    sources = " + ".join(f"`{Path(raw['work_dir']).parent.name}`: "
                         f"{', '.join(dict.fromkeys(r['task'] for r in raw['results']))}" for raw in raws)
    report = table(results, args, raws[0].get("dspy_version"),
                   command=f"python bench/quality.py --merge {' '.join(map(str, files))}")
    report += f"\nMerged from {len(files)} runs with the same settings ({sources}).\n"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(report)
    out_md.with_suffix(".json").write_text(json.dumps({**raws[0], "tasks": list(dict.fromkeys(r["task"] for r in results)),
                                                       "merged_from": [str(f) for f in files], "results": results},
                                                      indent=1))
    print(report)
    print(f"written: {out_md} and {out_md.with_suffix('.json')}")


# ---- main ---------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", help=f"comma-separated BBH tasks (default: {','.join(DEFAULT_TASKS)})")
    parser.add_argument("--arms", help=f"promptrl arms (default: {','.join(PROMPTRL_ARMS)}; mipro and gepa when "
                                       "their conf/optimizer file exists); 'none' for no promptrl arm")
    parser.add_argument("--dspy-arms", help=f"DSPy arms with --dspy-python (default: {','.join(DSPY_ARMS)})")
    parser.add_argument("--dspy-python", help="a Python with dspy installed (make install-dspy: .venv-dspy/bin/python)")
    for key in ("train", "val", "test", "runs", "budget", "epochs"):
        parser.add_argument(f"--{key}", type=int, help=f"default {SIZES['full'][key]} ({SIZES['quick'][key]} with --quick)")
    parser.add_argument("--test-pool", type=int, default=100, help="BBH examples held out as the test pool (dataset.test_pool)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_TASK} only, tiny splits")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of BBH task files")
    parser.add_argument("--work-dir", type=Path, help="run dirs (default outputs/bench_quality/<timestamp>)")
    parser.add_argument("--out", type=Path, help="table path (default bench/results/quality.md, --quick: quality_quick.md)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="the server's context (few-shot prompts grow)")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                        help="no run: one table from the .json files of earlier runs with the same settings "
                             "(default --out bench/results/quality_merged.md)")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out or HERE / "results" / "quality_merged.md")
    # `kill` (SIGTERM) unwinds like Ctrl-C: the server and an arm's child process are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    sizes = SIZES["quick" if args.quick else "full"]
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.data = args.data.resolve()
    tasks = args.tasks.split(",") if args.tasks else [QUICK_TASK] if args.quick else DEFAULT_TASKS
    available = sorted(p.stem for p in args.data.glob("*.json"))
    unknown = [t for t in tasks if t not in available]
    if unknown:
        sys.exit(f"unknown BBH task(s) {unknown} in {args.data}; available: {', '.join(available)}")
    if args.test > args.test_pool:
        sys.exit(f"--test {args.test} is larger than --test-pool {args.test_pool}")
    installed = [a for a in PROMPTRL_ARMS if a not in OPTIONAL_ARMS or (REPO / "conf" / "optimizer" / f"{a}.yaml").exists()]
    arms = installed if not args.arms else [] if args.arms == "none" else args.arms.split(",")
    missing = [a for a in arms if a not in installed]
    if missing:
        sys.exit(f"unknown or unavailable promptrl arm(s) {missing}; available here: {', '.join(installed)}")
    dspy_arms = []
    if args.dspy_python:
        dspy_arms = args.dspy_arms.split(",") if args.dspy_arms else DSPY_ARMS
        bad = [a for a in dspy_arms if a not in DSPY_ARMS]
        if bad:
            sys.exit(f"unknown DSPy arm(s) {bad}; available: {', '.join(DSPY_ARMS)}")
        if not Path(args.dspy_python).exists():
            sys.exit(f"--dspy-python {args.dspy_python} not found (make install-dspy makes .venv-dspy)")
    dspy_version = None
    if dspy_arms:
        probe = subprocess.run([args.dspy_python, "-c", "import dspy; print(dspy.__version__)"], capture_output=True,
                               text=True, env=child_env())
        if probe.returncode != 0:
            sys.exit(f"--dspy-python {args.dspy_python} cannot import dspy: {probe.stderr.strip().splitlines()[-1:]}")
        dspy_version = probe.stdout.strip().splitlines()[-1]

    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    work = (args.work_dir or REPO / "outputs" / "bench_quality" / stamp).resolve()
    out_md = args.out or HERE / "results" / ("quality_quick.md" if args.quick else "quality.md")
    print(f"tasks {', '.join(tasks)} | promptrl arms {', '.join(arms) or '-'} | DSPy arms {', '.join(dspy_arms) or '-'}"
          f" | train {args.train} val {args.val} test {args.test} runs {args.runs} budget {args.budget} | {work}",
          flush=True)
    server = Server(work / "server.log", args.n_ctx)
    results: list[dict] = []
    try:
        for task in tasks:
            splits_file = work / task / "splits.json"
            test = write_splits(task, args, splits_file)
            task_results = []
            for arm in arms:
                run_dir = work / task / arm
                result = {"task": task, **run_promptrl_arm(arm, task, args, server, run_dir)}
                check_test_split(run_dir, test)
                task_results.append(result)
                print(f"  {task:<22} promptrl {arm:<18} acc {mean_std(result.get('accuracy')):<15} "
                      f"train calls {fmt(result.get('train_calls')):>5}  {result['wall_s']:.0f} s  {result['status']}",
                      flush=True)
            for arm in dspy_arms:
                result = {"task": task, **run_dspy_arm(arm, args, server, splits_file, work / task)}
                task_results.append(result)
                print(f"  {task:<22} dspy     {arm:<18} acc {mean_std(result.get('accuracy')):<15} "
                      f"train calls {fmt(result.get('train_calls')):>5}  {result['wall_s']:.0f} s  {result['status']}",
                      flush=True)
            add_dspy_comparisons(task_results, args.seed)
            results += task_results
            report = table(results, args, dspy_version)  # rewritten after every task: a long run leaves its progress
            out_md.parent.mkdir(parents=True, exist_ok=True)
            out_md.write_text(report)
            raw = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "tasks": tasks, "program_lm": PROGRAM_LM, "teacher_lm": TEACHER_LM, "dspy_version": dspy_version,
                   "work_dir": str(work), "results": results}
            out_md.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    finally:
        server.stop()
    print()
    print(report)
    print(f"written: {out_md} and {out_md.with_suffix('.json')}; run dirs in {work}")


if __name__ == "__main__":
    main()

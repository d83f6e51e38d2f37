"""What a run writes about its numbers: per-phase results, the paired comparison, LM usage, report.md."""

from __future__ import annotations

import json
import os
import random
import socket
import statistics
import time
from pathlib import Path

from promptrl.io import atomic_write_text


def aggregate(phase: str, runs: list[dict], seeds: list[int], rewards: list[list[float | None]]) -> dict:
    """Each run's metrics with their mean and (sample) std, each run's seed, and each run's
    per-example rewards (in test-split order, for paired comparisons; None where the provider
    gave no answer)."""
    keys = list(runs[0]) if runs else []
    mean = {k: statistics.fmean(r[k] for r in runs) for k in keys}
    std = {k: statistics.stdev([r[k] for r in runs]) if len(runs) > 1 else 0.0 for k in keys}
    return {"phase": phase, "nb_runs": len(runs), "seeds": seeds, "runs": runs, "mean": mean, "std": std,
            "rewards": rewards}


def paired_comparison(baseline: dict, final: dict, seed: int | None = 0, resamples: int = 2000) -> dict:
    """Trained minus baseline reward, paired by run seed and example, with a 95% bootstrap CI
    over test examples. The run-to-run std only shows sampling noise on one test set; this
    interval also shows how much the gain depends on which examples were drawn.

    Only examples answered in every run of both arms count: a call the provider never answered
    is no evidence either way (`excluded_examples` says how many were left out)."""
    total = len(baseline["rewards"][0])
    both = [j for j in range(total)
            if all(r[j] is not None for r in baseline["rewards"]) and all(r[j] is not None for r in final["rewards"])]
    if not both:
        return {"reward_difference": None, "ci95": None, "examples": 0, "excluded_examples": total,
                "examples_improved": 0, "examples_worsened": 0, "bootstrap_resamples": 0}
    per_example = [statistics.fmean(f[j] - b[j] for b, f in zip(baseline["rewards"], final["rewards"])) for j in both]
    rng = random.Random(seed)
    n = len(per_example)
    means = sorted(statistics.fmean(per_example[rng.randrange(n)] for _ in range(n)) for _ in range(resamples))
    return {
        "reward_difference": statistics.fmean(per_example),
        "ci95": [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]],
        "examples": n,
        "excluded_examples": total - n,
        "examples_improved": sum(d > 0 for d in per_example),
        "examples_worsened": sum(d < 0 for d in per_example),
        "bootstrap_resamples": resamples,
    }


def usage_report(language_models: dict, started: float, embedding_models=()) -> dict:
    """Calls, tokens, cost, cache hits and failures per LM role; where and how long it ran."""
    # host/pid: which process ran the job (sweeps on joblib or Ray run jobs elsewhere)
    report = {"wall_time_s": round(time.perf_counter() - started, 2), "host": socket.gethostname(),
              "pid": os.getpid(), "language_models": {}}
    for role, lm in language_models.items():
        if lm is not None:
            entry = {"model": lm.model, **lm.usage.to_dict()}
            if not lm.is_local:  # how the schema was asked for, and the window of calls in flight
                entry["structured_output"] = lm.structured.report()
            entry["concurrency"] = lm.limiter.report()
            if lm.usage_by_role:  # e.g. program calls an optimizer made to score its candidates
                entry["of_which"] = {r: u.to_dict() for r, u in lm.usage_by_role.items()}
            report["language_models"][role] = entry
    for i, embedder in enumerate(embedding_models):
        report["language_models"][f"embedding_{i}" if i else "embedding"] = {"model": embedder.model,
                                                                            **embedder.usage.to_dict()}
    return report


def _fmt(result: dict | None, key: str) -> str:
    if not result or key not in result["mean"]:
        return "-"
    if result["nb_runs"] < 2:  # no spread from a single run
        return f"{result['mean'][key]:.3f}"
    return f"{result['mean'][key]:.3f} ± {result['std'][key]:.3f}"


def write_report(out: Path, title: str, phases: dict[str, dict | None], *, test_size: int, comparison=None,
                 history=(), best=None, usage: dict, program, status: str, notes=(), reason: str = "") -> None:
    """report.md: the numbers, the plots, the history, the LM usage and the learned prompts."""
    present = {label: r for label, r in phases.items() if r}
    lines = [f"# {title}", "", f"Status: **{status}**" + (f" - {reason}" if reason else ""), *notes, ""]
    if present:
        labels = list(present)
        lines += ["| metric | " + " | ".join(f"{label} (mean ± std)" for label in labels) + " |",
                  "|---" * (len(labels) + 1) + "|"]
        for key in next(iter(present.values()))["mean"]:
            lines.append(f"| {key} | " + " | ".join(_fmt(present[label], key) for label in labels) + " |")
        nb = next(iter(present.values()))["nb_runs"]
        runs = f"{nb} run" + ("s" if nb != 1 else "")
        lines += ["", f"Mean ± sample std over {runs} on the same {test_size} test examples, each run with its "
                  "own seed" + (" (baseline and trained runs share the seeds)." if len(present) > 1 else "."), ""]
    if comparison and comparison["examples"]:
        low, high = comparison["ci95"]
        excluded = comparison.get("excluded_examples", 0)
        lines += [f"Paired difference (trained − baseline reward, per example, averaged over runs): "
                  f"**{comparison['reward_difference']:+.3f}**, 95% bootstrap CI [{low:+.3f}, {high:+.3f}] over "
                  f"{comparison['examples']} test examples; {comparison['examples_improved']} improved, "
                  f"{comparison['examples_worsened']} worsened."
                  + (f" {excluded} examples without an answer from the provider in some run were left out."
                     if excluded else ""), ""]
    elif comparison:
        lines += ["No paired difference: no test example was answered in every run of both arms.", ""]
    if best:
        when = "the untrained program" if best["epoch"] < 0 else f"epoch {best['epoch'] + 1}"
        lines += [f"Best checkpoint: `{Path(best['path']).name}` ({when}, {best['monitor']} = {best['value']:.3f}).", ""]
    for name, caption in [("comparison.png", "Baseline vs trained"), ("history.png", "Training history"),
                          ("baseline.png", "Baseline"), ("evaluation.png", "Evaluation")]:
        if (out / name).exists():
            lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
    if history:
        keys = list(dict.fromkeys(k for r in history for k in r if k != "epoch"))
        lines += ["## History", "", "Epoch 0 is the untrained program on the validation split.", "",
                  "| epoch | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for record in history:
            cells = [f"{record[k]:.3f}" if isinstance(record.get(k), float) else str(record.get(k, "-")) for k in keys]
            lines.append(f"| {record['epoch']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Language model usage", "", "| role | model | calls | cache hits | failures | prompt tokens | "
              "completion tokens | cost (USD) |", "|---|---|---|---|---|---|---|---|"]
    for role, u in usage["language_models"].items():
        rows = [(role, u)] + [(f"{role}: {sub}", {**v, "model": u["model"]}) for sub, v in u.get("of_which", {}).items()]
        for name, v in rows:
            lines.append(f"| {name} | {v['model']} | {v['calls']} | {v['cache_hits']} | {v['failures']} | "
                         f"{v['prompt_tokens']} | {v['completion_tokens']} | {v['cost']:.4f} |")
    lines += ["", f"Wall time: {usage['wall_time_s']:.0f} s", "", "## Prompts", ""]
    for module, variables in program.trainable_variables.items():
        lines += [f"### {module}", "", f"Instructions: {variables['instructions'] or '(default)'}", "",
                  f"Examples ({len(variables['examples'])}):", ""]
        lines += [f"- `{json.dumps(e['input'])}` → `{json.dumps(e['output'])}`" for e in variables["examples"]]
        lines.append("")
    atomic_write_text(out / "report.md", "\n".join(lines))

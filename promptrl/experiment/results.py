"""What a run writes about its numbers: per-phase results, the paired comparison, LM usage, report.md."""

from __future__ import annotations

import enum
import json
import os
import random
import re
import shlex
import socket
import statistics
import time
import typing
from collections import Counter
from pathlib import Path

from promptrl.io import atomic_write_text
from promptrl.plots import failure_rate_text
from promptrl.report_html import write_html


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


def _call_path(role: str, u: dict) -> str | None:
    """How a remote model was called: the structured-output mode (and any fallback), the resends,
    the window of calls in flight. None for the embedded model and embedders."""
    structured = u.get("structured_output")
    if not structured:
        return None
    fell = "".join(f", fell back from `{f['from']}` ({f['reason']})" for f in structured.get("fallbacks", []))
    window = u.get("concurrency") or {}
    return (f"- {role}: structured output `{structured['mode']}` (setting `{structured['setting']}`{fell}); "
            f"{u.get('retries', 0)} retries, {u.get('format_resends', 0)} format resends; "
            f"at most {window.get('peak_in_flight', '-')} of {window.get('maximum', '-')} calls in flight")


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


def run_summary(phases: dict[str, dict | None], *, status: str = "ok", comparison: dict | None = None,
                usage: dict | None = None, history=()) -> dict:
    """A run's end numbers, flat, under the names the sweep report and MLflow share.

    `{phase}_{metric}_mean` / `_std` for `baseline` and `final`; `final` is the program the run
    ends with: the trained one, the evaluated one (`evaluate`), or the untrained one when a run
    finished without training (no optimizer, epochs=0) - never the baseline of a run that stopped
    before its final runs. No `_std` from a single run: no spread is not a spread of zero.
    `best_val_reward` (the number to choose a sweep's arm by), the paired difference, LM usage
    and wall time are None when unknown."""
    baseline = phases.get("baseline")
    final = phases.get("final") or phases.get("evaluation") or (baseline if status == "ok" else None)
    numbers: dict = {}
    for phase, result in (("baseline", baseline), ("final", final)):
        for name, mean in (result or {}).get("mean", {}).items():
            numbers[f"{phase}_{name}_mean"] = mean
            if result.get("nb_runs") != 1:
                numbers[f"{phase}_{name}_std"] = result["std"][name]
    numbers["best_val_reward"] = max((h["val_reward"] for h in history or () if h.get("val_reward") is not None),
                                     default=None)
    difference = (comparison or {}).get("reward_difference")
    low, high = comparison["ci95"] if difference is not None else (None, None)
    numbers.update(reward_difference=difference, reward_difference_ci95_low=low, reward_difference_ci95_high=high)
    models = list((usage or {}).get("language_models", {}).values())
    numbers["lm_calls"] = sum(u["calls"] for u in models) if models else None
    numbers["tokens"] = sum(u["prompt_tokens"] + u["completion_tokens"] for u in models) if models else None
    numbers["cost_usd"] = round(sum(u["cost"] for u in models), 6) if models else None
    numbers["wall_time_s"] = (usage or {}).get("wall_time_s")
    return numbers


# ----------------------------------------------------------------------------- what the run was


def _choices(annotation) -> list | None:
    """The fixed answers of an output field typed `choice` / Literal / Enum, else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [member.value for member in annotation]
    return None


def chance_level(reward, output_model, train_labels: list, test_labels: list) -> dict | None:
    """What a program that does not read its input scores with this reward: the reference line of
    the plots, or None when there is no such number to know.

    Only for an exact-match reward on one output field (a partial-credit, similarity or judge
    reward has no chance rate the labels alone give). A field typed `choice` (Literal/Enum) with n
    answers gives the uniform guess 1/n; a field with fixed choices, or few distinct training labels
    (at most 10, each seen 3 times on average: a BBH-like classification task), gives the
    majority class: the train pool's most common label, scored on the test targets. The line drawn
    is the majority class when there is one (what always answering it scores on *this* test
    split), else 1/n."""
    from promptrl.rewards import ExactMatch, values_match

    if not isinstance(reward, ExactMatch) or output_model is None:
        return None
    fields = [f for f in output_model.model_fields
              if (not reward.in_mask or f in reward.in_mask) and f not in (reward.out_mask or [])]
    if len(fields) != 1 or not test_labels:
        return None
    field = fields[0]

    def value(y):
        return (y.model_dump() if hasattr(y, "model_dump") else dict(y)).get(field)

    choices = _choices(output_model.model_fields[field].annotation)
    train = [value(y) for y in train_labels]
    test = [value(y) for y in test_labels]
    counts = Counter(json.dumps(v, sort_keys=True, default=str) for v in train)
    few_labels = bool(counts) and len(counts) <= 10 and 3 * len(counts) <= len(train)
    level: dict = {"field": field}
    if choices:
        level["uniform"] = {"choices": len(choices), "rate": 1 / len(choices)}
    if counts and (choices or few_labels):
        top = max(counts.values())
        # A tie (a balanced train pool) has no majority: the expected score of answering one of the
        # tied labels, picked at random.
        tied = [json.loads(label) for label, count in counts.items() if count == top]
        rate = statistics.fmean(sum(values_match(label, v, reward.case_sensitive) for v in test) / len(test)
                                for label in tied)
        level["majority"] = {"labels": tied, "rate": rate, "train_share": top / len(train),
                             "distinct_labels": len(counts)}
    if "majority" in level:
        m = level["majority"]
        names = " / ".join(repr(label) for label in m["labels"])
        level.update(value=m["rate"], label=f"majority class {names} ({m['rate']:.2f})")
    elif "uniform" in level:
        n = level["uniform"]["choices"]
        level.update(value=1 / n, label=f"chance: uniform guess 1/{n} ({1 / n:.2f})")
    else:
        return None
    return level


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe_node(node) -> str:
    """`ExactMatch(in_mask=["answer"], case_sensitive=true)` from a config node (`_target_` + args)."""
    if not isinstance(node, dict):
        return _short(node)
    target = str(node.get("_target_", "?"))
    name = target.rsplit(".", 1)[-1] if target.startswith("promptrl.") else target
    args = ", ".join(f"{k}={_short(v)}" for k, v in node.items()
                     if not k.startswith("_") and v is not None and k != "language_model")
    return f"{name}({args})"


def _settings(config: dict, keys=None) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in config.items() if (keys is None or k in keys) and v is not None)


def _command(out: Path, command: str) -> str | None:
    """The command line that made the run, from the overrides the CLI saved (secrets masked)."""
    import yaml

    from promptrl.secrets import MASK, is_secret_key

    path = out / "overrides.yaml"
    if not path.is_file():
        return None
    overrides = yaml.safe_load(path.read_text()) or []
    shown = []
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if sep and is_secret_key(key.rsplit(".", 1)[-1]):
            item = f"{key}={MASK}"
        elif re.fullmatch(r"'[\w./:@+-]*'", value):  # a path the CLI quoted for Hydra, that needs no quotes
            item = f"{key}={value[1:-1]}"
        shown.append(str(item))
    return " ".join(["promptrl", command, *(shlex.quote(o) for o in shown)])


def run_setup(cfg, out: Path, command: str, dataset, sizes: dict, program, optimizer=None,
              split_seed: int | None = None) -> dict:
    """What a reviewer asks first, for report.md: the command, the data, the model, the reward and
    metrics by name, the optimizer and its settings. `split_seed`: the seed the splits were drawn
    with when it is not the run's (a checkpoint's training seed)."""
    from promptrl.experiment.build import container

    lm = program.language_models[0] if program.language_models else None
    judge = getattr(program.reward, "language_model", None)
    setup = {
        "command": _command(out, command),
        "dataset": {"name": dataset.name, **sizes, "seed": cfg.get("seed") if split_seed is None else split_seed,
                    "runs_seed": cfg.get("seed")},
        "program": program.name,
        "language_model": (f"{lm.model} ({_settings(lm.get_config(), ('temperature', 'max_tokens'))})"
                           if lm is not None else None),
        "reward": {"name": getattr(program.reward, "name", "reward"),
                   "spec": describe_node(container(cfg, "reward")) if "reward" in cfg else
                   type(program.reward).__name__,
                   "judge": judge.model if judge is not None else None},
        "metrics": [{"name": m.name, "spec": describe_node(node)}
                    for m, node in zip(program.metrics, (container(cfg, "metrics") or {}).values())]
        if "metrics" in cfg else [{"name": m.name, "spec": type(m).__name__} for m in program.metrics],
        "nb_runs": cfg.get("nb_runs"),
    }
    if optimizer is not None:
        teacher = getattr(optimizer, "language_model", None)
        setup["optimizer"] = {"name": type(optimizer).__name__, "settings": _settings(optimizer.get_config()),
                              "teacher": teacher.model if teacher is not None else None,
                              "epochs": cfg.get("epochs"), "batch_size": cfg.get("batch_size")}
    return setup


# ----------------------------------------------------------------------------- report.md


def format_cell(result: dict | None, key: str) -> str:
    """One cell of a results table: mean ± std, the mean alone for one run, a rate for failure counts."""
    if not result or key not in result["mean"]:
        return "-"
    if key in ("failures", "infra_failures"):  # counts: a rate of the test examples, not a score
        return failure_rate_text(result, key) or "-"
    if result["nb_runs"] < 2:  # no spread from a single run (not a spread of zero)
        return f"{result['mean'][key]:.3f}"
    return f"{result['mean'][key]:.3f} ± {result['std'][key]:.3f}"


def _setup_lines(setup: dict, phases: dict, best, program_section) -> list[str]:
    lines = ["## Setup", ""]
    lines.append(f"- **Command**: `{setup['command']}`" if setup.get("command")
                 else "- **Command**: not started from the CLI (no overrides.yaml)")
    d = setup["dataset"]
    sizes = ", ".join(f"{d[k]} {name}" for k, name in (("train", "train"), ("val", "validation"), ("test", "test"))
                      if d.get(k) is not None)
    runs = f"; runs use seed {d['runs_seed']}" if d.get("runs_seed", d.get("seed")) != d.get("seed") else ""
    lines.append(f"- **Dataset**: {d['name']}: {sizes} examples (splits drawn with seed {d.get('seed')}{runs})")
    lines.append(f"- **Program**: {setup.get('program')}" + ("; picture below" if program_section else ""))
    if setup.get("language_model"):
        lines.append(f"- **Language model**: {setup['language_model']}")
    reward = setup["reward"]
    judge = f", judged by {reward['judge']}" if reward.get("judge") else ""
    lines.append(f"- **Reward** (`reward` in the tables and plots; named `{reward['name']}`): "
                 f"`{reward['spec']}`{judge}")
    if setup.get("metrics"):
        lines.append("- **Metrics** (watched, not optimized): "
                     + ", ".join(f"`{m['name']}` = `{m['spec']}`" for m in setup["metrics"]))
    optimizer = setup.get("optimizer")
    if optimizer:
        teacher = f", proposals by {optimizer['teacher']}" if optimizer.get("teacher") else ""
        chosen = ""
        if best:
            when = "the untrained program" if best["epoch"] < 0 else f"epoch {best['epoch'] + 1}"
            chosen = f"; \"trained\" is the checkpoint with the best {best['monitor']} ({when})"
        lines.append(f"- **Optimizer**: `{optimizer['name']}({optimizer['settings']})`{teacher}, "
                     f"{optimizer['epochs']} epochs, batch size {optimizer['batch_size']}{chosen}")
    elif "trained" in phases:
        lines.append("- **Optimizer**: none (baseline evaluations only)")
    nb = setup.get("nb_runs")
    if nb:
        arms = " per arm" if "trained" in phases else ""
        paired = "; baseline and trained share the run seeds (paired)" if phases.get("trained") else ""
        lines.append(f"- **Runs**: {nb} evaluation{'s' if nb != 1 else ''}{arms} of the {d.get('test')} test "
                     f"examples, each with its own seed{paired}")
    lines.append("")
    if program_section:
        lines += ["## Program", "", *program_section, ""]
    return lines


def _result_lines(present: dict, comparison, chance, test_size: int) -> list[str]:
    lines = ["## Result", ""]
    if not present:
        return lines + ["No evaluation finished: no result.", ""]
    nb = next(iter(present.values()))["nb_runs"]
    spread = f"mean ± sample std over {nb} runs" if nb > 1 else "one run: no spread to show (set nb_runs >= 2)"
    rewards = " → ".join(f"{label} {format_cell(r, 'reward')}" for label, r in present.items())
    lines += [f"**Reward** on {test_size} test examples: {rewards} ({spread}).", ""]
    if comparison and comparison.get("examples"):
        low, high = comparison["ci95"]
        excluded = comparison.get("excluded_examples", 0)
        lines += [f"**Paired difference** (trained − baseline reward, per example, averaged over runs): "
                  f"**{comparison['reward_difference']:+.3f}**, 95% bootstrap CI [{low:+.3f}, {high:+.3f}] over "
                  f"{comparison['examples']} test examples; {comparison['examples_improved']} improved, "
                  f"{comparison['examples_worsened']} worsened."
                  + (" The interval excludes 0." if low > 0 or high < 0 else " The interval includes 0: "
                     "the difference is not distinguishable from none.")
                  + (f" {excluded} examples without an answer from the provider in some run were left out."
                     if excluded else ""), ""]
    elif comparison:
        lines += ["No paired difference: no test example was answered in every run of both arms.", ""]
    if chance:
        parts = []
        if "majority" in chance:
            m = chance["majority"]
            if len(m["labels"]) == 1:
                parts.append(f"always answering the train pool's most common `{chance['field']}` "
                             f"{m['labels'][0]!r} ({m['train_share']:.0%} of its labels) scores **{m['rate']:.3f}** "
                             "on the test split")
            else:
                parts.append(f"the train pool's most common `{chance['field']}` labels tie "
                             f"({', '.join(repr(v) for v in m['labels'])}, {m['train_share']:.0%} each): always "
                             f"answering one of them scores **{m['rate']:.3f}** on the test split on average")
        if "uniform" in chance:
            u = chance["uniform"]
            parts.append(f"a uniform guess among the field's {u['choices']} choices scores {u['rate']:.3f}")
        lines += ["**Chance** (the dashed line in the plots): " + "; ".join(parts) + ".", ""]
    else:
        lines += ["**Chance**: no chance line (the reward is not an exact match on one output field with fixed "
                  "choices or few distinct labels).", ""]
    failures = [f"{label} {failure_rate_text(r)}" for label, r in present.items() if "failures" in r["mean"]]
    if failures:
        lines += ["**Failed predictions** (no valid output, e.g. cut at max_tokens; scored 0): "
                  + "; ".join(failures) + ".", ""]
    infra = [f"{label} {failure_rate_text(r, 'infra_failures')}" for label, r in present.items()
             if r["mean"].get("infra_failures")]
    if infra:
        lines += ["**No answer from the provider** (left out of the scores): " + "; ".join(infra) + ".", ""]
    labels = list(present)
    lines += ["| metric | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    names = {"failures": "failed predictions", "infra_failures": "no answer (infra)"}
    for key in next(iter(present.values()))["mean"]:
        lines.append(f"| {names.get(key, key)} | " + " | ".join(format_cell(present[label], key) for label in labels) + " |")
    lines.append("")
    return lines


def write_report(out: Path, title: str, phases: dict[str, dict | None], *, test_size: int, comparison=None,
                 history=(), best=None, usage: dict, program, status: str, notes=(), reason: str = "",
                 setup: dict | None = None, chance: dict | None = None,
                 prompts: tuple[str, dict] | None = None) -> None:
    """report.md: first what a reviewer asks (status, command, data, program, reward, optimizer),
    then the result with its paired CI, failed predictions and chance level, the plots, the
    history, the LM usage and the learned prompts.

    `prompts` is (where they come from, {module: variables}) - the prompts of a saved file, so the
    report never shows prompts no checkpoint holds; default: the program's own. The program's
    picture (program.png and a Mermaid block) shows the same state. report.html is written beside it."""
    present = {label: r for label, r in phases.items() if r}
    program_section = _program_section(out, program, prompts[1] if prompts else None)
    lines = [f"# {title}", "", f"Status: **{status}**" + (f" - {reason}" if reason else ""), *notes, ""]
    if setup:
        lines += _setup_lines(setup, phases, best, program_section)
    elif program_section:
        lines += ["## Program", "", *program_section, ""]
    lines += _result_lines(present, comparison, chance, test_size)
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
    lines += [""] + [line for role, u in usage["language_models"].items() if (line := _call_path(role, u))]
    source, variables = prompts if prompts else ("the program as evaluated", program.trainable_variables)
    lines += ["", f"Wall time: {usage['wall_time_s']:.0f} s", "", "## Prompts", "", f"From {source}.", ""]
    for module, values in variables.items():
        lines += [f"### {module}", "", f"Instructions: {values['instructions'] or '(default)'}", "",
                  f"Examples ({len(values['examples'])}):", ""]
        lines += [f"- `{json.dumps(e['input'])}` → `{json.dumps(e['output'])}`" for e in values["examples"]]
        lines.append("")
    atomic_write_text(out / "report.md", "\n".join(lines))
    write_html(out / "report.md")


def _program_section(out: Path, program, variables: dict | None) -> list[str]:
    """program.png and the graph as Mermaid, drawn with `variables` (the saved prompts the report
    shows) as the trainable state. A picture that cannot be drawn costs the report one line, not the run."""
    from promptrl.program_picture import mermaid, write_program_png

    try:
        write_program_png(program, out / "program.png", variables=variables)
        graph = mermaid(program, variables=variables)
    except Exception as error:  # noqa: BLE001 - the numbers matter more than the picture
        return [f"(the program's picture could not be drawn: {type(error).__name__}: {error})"]
    return ["![Program](program.png)", "", "```mermaid", graph.rstrip("\n"), "```"]


def saved_prompts(out: Path, best_path, evaluated: bool, training: bool) -> tuple[str, dict] | None:
    """The prompts report.md shows, read from a saved program file, and where they come from: the
    best checkpoint (evaluated by the trained runs, or the best so far when the run stopped before
    them), else where training stopped (last.program.json), else the untrained program."""
    from promptrl.program import read_state

    candidates = []
    if best_path:
        candidates.append((Path(best_path), "the best checkpoint, which the trained runs evaluated" if evaluated
                           else "the best checkpoint so far (the run stopped before the trained runs evaluated it)"))
    if training:
        candidates.append((out / "last.program.json", "where training stopped (not the best checkpoint, "
                                                      "not evaluated on the test split)"))
    candidates.append((out / "initial.program.json", "the untrained program" + ("" if training else ", as evaluated")))
    for path, what in candidates:
        if path.is_file():
            state = read_state(path)
            variables = {n["name"]: n["variables"] for n in state["nodes"] if n.get("variables") is not None}
            return f"`{path.name}`: {what}", variables
    return None

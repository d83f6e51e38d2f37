"""The experiment recipe: a composed Hydra config -> program, runs, training, files in the run dir.

train:    build -> NB_RUNS baseline evaluations -> fit (best-only checkpoint on val_reward)
          -> reload best -> NB_RUNS final evaluations -> plots, report.md, usage.json
evaluate: build (or load a checkpoint) -> NB_RUNS evaluations -> files

Every file is written as soon as its numbers exist, so a run stopped half-way keeps them.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from promptrl import plots
from promptrl.callbacks import HistoryLogger, ProgramCheckpoint, ProgressBar
from promptrl.datasets import Dataset
from promptrl.errors import UserError
from promptrl.io import atomic_write_json, atomic_write_text
from promptrl.secrets import redact
from promptrl.program import Program
from promptrl.trainer import derive_seed, evaluate

# ---------------------------------------------------------------------------- building


def _instantiate(node, what: str, **kwargs):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, UserError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        first_line = str(error).strip().splitlines()[0]
        raise UserError(f"cannot build {what}: {first_line} {cause or ''}; check the '{what}' config") from None
    except MissingMandatoryValue as error:
        key = f"{what}.{error.full_key}"
        raise UserError(f"missing value for {key}; set it on the command line: {key}=...") from None


def container(cfg, key: str | None = None) -> Any:
    """A config node as plain Python, with clear errors for missing values."""
    try:
        node = cfg if key is None else cfg[key]
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except MissingMandatoryValue as error:
        full_key = error.full_key if key is None or error.full_key.startswith(f"{key}.") else f"{key}.{error.full_key}"
        raise UserError(f"missing value for {full_key}; set it on the command line: {full_key}=...") from None


SIZE_KEYS = ("train_size", "val_size", "test_size")


def build_splits(cfg: DictConfig):
    node = container(cfg, "dataset")
    sizes = {key: node.pop(key, None) for key in SIZE_KEYS}
    dataset = _instantiate(node, "dataset")
    if not isinstance(dataset, Dataset):
        raise UserError(f"dataset target returned {type(dataset).__name__}; it must return a promptrl.datasets.Dataset")
    train, val, test = dataset.splits(sizes["train_size"], sizes["val_size"] or 0, sizes["test_size"], seed=cfg.seed)
    return dataset, train, val, test


def build_program(cfg: DictConfig, dataset: Dataset):
    language_model = _instantiate(container(cfg, "language_model"), "language_model")
    program = _instantiate(container(cfg, "program"), "program", language_model=language_model,
                           dataset_input=dataset.input_data_model, dataset_output=dataset.output_data_model)
    return program, language_model


def build_scorers(cfg: DictConfig):
    reward = _instantiate(container(cfg, "reward"), "reward")
    metrics = [_instantiate(node, f"metrics.{name}") for name, node in (container(cfg, "metrics") or {}).items()]
    return reward, metrics


def build_optimizer(cfg: DictConfig, program_language_model):
    """The optimizer, and its teacher LM for optimizers that write prompts (None otherwise).

    The teacher is `optimizer.language_model`, else `optimizer_language_model`, else the program's LM.
    """
    node = container(cfg, "optimizer") if "optimizer" in cfg else None
    if not node:
        return None, None
    kwargs = {}
    if "language_model" in node:
        spec = node.pop("language_model") or container(cfg, "optimizer_language_model")
        # Defaulting to the program's model still gets its own instance, so its usage is accounted apart.
        kwargs["language_model"] = (_instantiate(spec, "optimizer_language_model") if spec
                                    else program_language_model.clone())
    return _instantiate(node, "optimizer", **kwargs), kwargs.get("language_model")


# ---------------------------------------------------------------------------- results


def aggregate(phase: str, runs: list[dict], seeds: list[int]) -> dict:
    """Each run's metrics with their mean and (sample) std, and the seed of each run."""
    keys = list(runs[0]) if runs else []
    mean = {k: statistics.fmean(r[k] for r in runs) for k in keys}
    std = {k: statistics.stdev([r[k] for r in runs]) if len(runs) > 1 else 0.0 for k in keys}
    return {"phase": phase, "nb_runs": len(runs), "seeds": seeds, "runs": runs, "mean": mean, "std": std}


async def run_evaluations(program, split, cfg, phase: str, out: Path, progress: bool, log: Callable) -> dict:
    """NB_RUNS evaluations of the test split, run i with seed derive_seed(seed, "run", i).

    Baseline and final use the same run seeds, so the comparison is paired.
    """
    runs, seeds, rows = [], [], []
    for i in range(cfg.nb_runs):
        seed = derive_seed(cfg.seed, "run", i)
        callbacks = [ProgressBar(f"{phase} run {i + 1}/{cfg.nb_runs} ")] if progress else []
        logs, predictions = await evaluate(program, split.x, split.y, cfg.batch_size, seed, callbacks,
                                           return_predictions=True)
        runs.append(logs)
        seeds.append(seed)
        rows += [{"run": i, "index": p.index, "input": p.x.model_dump(), "target": p.y_true.model_dump(),
                  "prediction": p.y_pred.model_dump() if p.y_pred is not None else None,
                  "reward": p.reward, "error": p.error} for p in predictions]
        log(f"{phase} run {i + 1}/{cfg.nb_runs}: " + ", ".join(f"{k}={v:.3f}" for k, v in logs.items()))
    result = aggregate(phase, runs, seeds)
    atomic_write_json(out / f"{phase}.json", result)
    atomic_write_text(out / f"{phase}_predictions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return result


def usage_report(language_models: dict, started: float) -> dict:
    # host/pid: which process ran the job (sweeps on joblib or Ray run jobs elsewhere)
    report = {"wall_time_s": round(time.perf_counter() - started, 2), "host": socket.gethostname(),
              "pid": os.getpid(), "language_models": {}}
    for role, lm in language_models.items():
        if lm is not None:
            report["language_models"][role] = {"model": lm.model, **lm.usage.to_dict()}
    return report


def fmt(result: dict | None, key: str) -> str:
    if not result or key not in result["mean"]:
        return "-"
    return f"{result['mean'][key]:.3f} ± {result['std'][key]:.3f}"


def write_report(out: Path, cfg, baseline, final, history, best, usage, program, status: str) -> None:
    metrics = [k for k in (baseline or final or {"mean": {}})["mean"]]
    lines = [f"# promptrl run: {cfg.task_name}", "", f"Status: **{status}**", ""]
    lines += ["| metric | baseline (mean ± std) | trained (mean ± std) | change |", "|---|---|---|---|"]
    for key in metrics:
        change = f"{final['mean'][key] - baseline['mean'][key]:+.3f}" if baseline and final else "-"
        lines.append(f"| {key} | {fmt(baseline, key)} | {fmt(final, key)} | {change} |")
    nb = (baseline or final or {}).get("nb_runs", 0)
    lines += ["", f"Mean ± sample std over {nb} runs on the same {cfg.dataset.get('test_size')} test examples, "
              "each run with its own seed (baseline and trained runs share the seeds).", ""]
    if best:
        lines += [f"Best checkpoint: `{Path(best['path']).name}` (epoch {best['epoch'] + 1}, "
                  f"{best['monitor']} = {best['value']:.3f}).", ""]
    for name, title in [("comparison.png", "Baseline vs trained"), ("history.png", "Training history"),
                        ("baseline.png", "Baseline")]:
        if (out / name).exists():
            lines += [f"## {title}", "", f"![{title}]({name})", ""]
    if history:
        lines += ["## History", "", "| epoch | " + " | ".join(k for k in history[0] if k != "epoch") + " |",
                  "|---" * len(history[0]) + "|"]
        for record in history:
            lines.append(f"| {record['epoch'] + 1} | " + " | ".join(
                f"{v:.3f}" if isinstance(v, float) else str(v) for k, v in record.items() if k != "epoch") + " |")
        lines.append("")
    lines += ["## Language model usage", "", "| role | model | calls | cache hits | failures | prompt tokens | "
              "completion tokens | cost (USD) |", "|---|---|---|---|---|---|---|---|"]
    for role, u in usage["language_models"].items():
        lines.append(f"| {role} | {u['model']} | {u['calls']} | {u['cache_hits']} | {u['failures']} | "
                     f"{u['prompt_tokens']} | {u['completion_tokens']} | {u['cost']:.4f} |")
    lines += ["", f"Wall time: {usage['wall_time_s']:.0f} s", "", "## Trained prompts", ""]
    for module, variables in program.trainable_variables.items():
        lines += [f"### {module}", "", f"Instructions: {variables['instructions'] or '(default)'}", "",
                  f"Examples ({len(variables['examples'])}):", ""]
        lines += [f"- `{json.dumps(e['input'])}` → `{json.dumps(e['output'])}`" for e in variables["examples"]]
        lines.append("")
    atomic_write_text(out / "report.md", "\n".join(lines))


# ---------------------------------------------------------------------------- recipes


def _write_config(cfg, out: Path) -> None:
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(redact(container(cfg)))))


def run_train(cfg: DictConfig, output_dir, progress: bool = True, log: Callable = print) -> dict:
    """The train recipe. Returns {"baseline", "final", "history", "best", "usage", "output_dir"}."""
    return asyncio.run(_train(cfg, Path(output_dir), progress, log))


async def _train(cfg, out: Path, progress: bool, log: Callable) -> dict:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    dataset, train, val, test = build_splits(cfg)
    program, lm = build_program(cfg, dataset)
    reward, metrics = build_scorers(cfg)
    optimizer, teacher = build_optimizer(cfg, lm)
    program.compile(reward=reward, optimizer=optimizer, metrics=metrics)
    _write_config(cfg, out)
    program.save(out / "initial.program.json")
    log(f"dataset {dataset.name}: train {len(train)}, val {len(val)}, test {len(test)} | "
        f"model {lm.model} | optimizer {type(optimizer).__name__ if optimizer else 'none (baseline only)'}")
    lms = {"program": lm, "optimizer": teacher}
    baseline = final = best = None
    history: list[dict] = []
    status = "failed"
    try:
        baseline = await run_evaluations(program, test, cfg, "baseline", out, progress, log)
        plots.plot_metrics_with_mean_and_std(baseline, out / "baseline.png", title=f"Baseline - {cfg.task_name}")
        if optimizer is not None and cfg.epochs > 0:
            if len(val) == 0:
                raise UserError("training needs validation data for the val_reward checkpoint; set dataset.val_size > 0")
            callbacks_cfg = container(cfg, "callbacks") or {}
            callbacks = [_instantiate(node, f"callbacks.{name}") for name, node in callbacks_cfg.items() if node]
            logger = HistoryLogger(out / "history.jsonl", out / "history.csv")
            callbacks += [logger] + ([ProgressBar("fit ")] if progress else [])
            await program.fit(train.x, train.y, validation_data=(val.x, val.y), epochs=cfg.epochs,
                              batch_size=cfg.batch_size, callbacks=callbacks, seed=cfg.seed)
            history = logger.records
            plots.plot_history(history, out / "history.png", title=f"Training history - {cfg.task_name}")
            checkpoint = next((c for c in callbacks if isinstance(c, ProgramCheckpoint) and c.best_path), None)
            if checkpoint is not None:
                best = {"path": checkpoint.best_path, "epoch": checkpoint.best_epoch,
                        "monitor": checkpoint.monitor, "value": checkpoint.best}
                # Reload the best prompts into the live program (keeps its LM and usage counters).
                program.set_trainable_variables(Program.load(checkpoint.best_path, lm).trainable_variables)
                log(f"reloaded best checkpoint: epoch {best['epoch'] + 1}, {best['monitor']}={best['value']:.3f}")
            final = await run_evaluations(program, test, cfg, "final", out, progress, log)
            plots.plot_metrics_comparison_with_mean_and_std(
                {"baseline": baseline, "trained": final}, out / "comparison.png",
                title=f"Baseline vs trained - {cfg.task_name} (n={cfg.nb_runs} runs)")
        status = "ok"
    finally:
        usage = usage_report(lms, started)
        atomic_write_json(out / "usage.json", usage)
        write_report(out, cfg, baseline, final, history, best, usage, program, status)
    return {"baseline": baseline, "final": final, "history": history, "best": best, "usage": usage,
            "output_dir": str(out)}


def run_evaluate(cfg: DictConfig, output_dir, progress: bool = True, log: Callable = print,
                 override_language_model: bool = False) -> dict:
    return asyncio.run(_evaluate(cfg, Path(output_dir), progress, log, override_language_model))


async def _evaluate(cfg, out: Path, progress: bool, log: Callable, override_language_model: bool) -> dict:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    dataset, _, _, test = build_splits(cfg)
    program, lm = build_program(cfg, dataset)
    if cfg.checkpoint:
        # The checkpoint's own language model, unless language_model=... was given on the command line.
        program = Program.load(cfg.checkpoint, lm if override_language_model else None)
        lm = program.language_models[0]
    reward, metrics = build_scorers(cfg)
    program.compile(reward=reward, metrics=metrics)
    _write_config(cfg, out)
    log(f"evaluating {cfg.checkpoint or program.name} on {dataset.name} test ({len(test)} examples), "
        f"{cfg.nb_runs} runs, model {lm.model}")
    result = await run_evaluations(program, test, cfg, "evaluation", out, progress, log)
    plots.plot_metrics_with_mean_and_std(result, out / "evaluation.png", title=f"Evaluation - {cfg.task_name}")
    usage = usage_report({"program": lm}, started)
    atomic_write_json(out / "usage.json", usage)
    return {"evaluation": result, "usage": usage, "output_dir": str(out)}

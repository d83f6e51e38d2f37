"""The experiment recipes: a composed Hydra config -> program, runs, training, files in the run dir.

train:    build -> NB_RUNS baseline evaluations -> fit (best-only checkpoint on val_reward, the
          untrained program included) -> reload best -> NB_RUNS final evaluations -> plots, report
evaluate: build (or load a checkpoint) -> NB_RUNS evaluations -> files

Every file is written as soon as its numbers exist, so a run stopped half-way keeps them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from promptrl import plots
from promptrl.callbacks import Callback, HistoryLogger, ProgramCheckpoint, ProgressBar
from promptrl.datasets import adopt_split_keys, describe_source
from promptrl.errors import BudgetReached, UserError, one_line
from promptrl.experiment.build import (
    instantiate_node, build_budget, build_optimizer, build_program, build_scorers, build_splits, check_run_keys,
    container, judge_models, trust_configured_modules,
)
from promptrl.experiment.results import (
    aggregate, chance_level, paired_comparison, run_setup, saved_prompts, usage_report, write_report,
)
from promptrl.experiment.status import RunStatus, check_failure_budget
from promptrl.io import atomic_write_json, atomic_write_text
from promptrl.language_model import SETTING_KEYS, LanguageModel, provider_of
from promptrl.overrides import override_key
from promptrl.program import Program, read_state
from promptrl.secrets import scrub_config
from promptrl.seeding import derive_seed
from promptrl.trainer import check_monitors, evaluate_runs


async def run_evaluations(program, split, cfg, phase: str, out: Path, progress: bool, log: Callable,
                          status: RunStatus | None = None) -> dict:
    """NB_RUNS evaluations of the test split, run i with seed derive_seed(seed, "run", i), their calls
    interleaved example by example (trainer.evaluate_runs).

    Baseline and final use the same run seeds, so the comparison is paired.
    """
    seeds = [derive_seed(cfg.seed, "run", i) for i in range(cfg.nb_runs)]
    runs_label = f"{cfg.nb_runs} run{'s' if cfg.nb_runs != 1 else ''}"
    callbacks = [ProgressBar(f"{phase} ({runs_label}) ")] if progress else []
    evaluations = await evaluate_runs(program, split.x, split.y, seeds, callbacks)
    runs = [logs for logs, _ in evaluations]
    rewards = [[None if p.failure == "infrastructure" else p.reward for p in predictions]
               for _, predictions in evaluations]
    rows = [{"run": i, "index": p.index, "input": p.x.model_dump(), "target": p.y_true.model_dump(),
             "prediction": p.y_pred.model_dump() if p.y_pred is not None else None,
             "reward": None if p.failure == "infrastructure" else p.reward, "failure": p.failure,
             "error": p.error} for i, (_, predictions) in enumerate(evaluations) for p in predictions]
    # every prediction paid for is kept, also when the failure budget stops the run below
    atomic_write_text(out / f"{phase}_predictions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    for i, (logs, predictions) in enumerate(evaluations):
        log(f"{phase} run {i + 1}/{cfg.nb_runs}: " + ", ".join(f"{k}={v:.3f}" for k, v in logs.items()))
        if predictions and all(p.failure == "invalid" for p in predictions):
            logging.getLogger("promptrl").warning(no_valid_answer(program, f"{phase} run {i + 1}",
                                                                  predictions[0].error))
        if status is not None:
            status.infra_failures(f"{phase} run {i + 1}", int(logs["infra_failures"]), len(predictions))
    for i, (logs, predictions) in enumerate(evaluations):
        check_failure_budget(f"{phase} run {i + 1}", logs["infra_failures"], len(predictions), cfg.max_failure_rate)
    result = aggregate(phase, runs, seeds, rewards)
    atomic_write_json(out / f"{phase}.json", result)
    return result


def no_valid_answer(program, what: str, first_error: str | None) -> str:
    """Why a run where no reply was an answer most likely went so, and the setting that fixes it."""
    modes = {lm.structured.mode for lm in program.language_models if not lm.is_local}
    if modes & {"json_object", "none"}:  # the schema was only in the prompt: small models echo it back
        fix = (f"the server was not asked to follow the output schema (structured_output "
               f"{'/'.join(sorted(modes))}); use language_model.structured_output=auto, which sends the schema")
    else:
        fix = ("check that the server enforces the schema it is sent (language_model.structured_output) and "
               "that language_model.max_tokens leaves room for the whole JSON")
    return f"no prediction of {what} was a valid answer (first: {first_error}); {fix}"


def _embedders(program) -> list:
    scorers = ([program.reward] if program.reward else []) + list(program.metrics)
    return [s.embedding_model for s in scorers if getattr(s, "embedding_model", None) is not None]


def _write_config(cfg, out: Path, **actual) -> None:
    """config.yaml: the resolved config (secrets redacted); `actual` replaces keys by what was really
    used (e.g. the language model of an evaluated checkpoint)."""
    config = {**container(cfg), **actual}
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(scrub_config(config))))


def run_stoppable(coroutine):
    """asyncio.run, where SIGTERM stops the run as Ctrl-C does: the run is cancelled, its
    handlers write usage.json, report.md, last.program.json and status.json 'interrupted', then
    KeyboardInterrupt goes up (a SIGINT ignored by a background shell does not matter here)."""
    import signal

    async def main():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no Unix signals
            pass
        try:
            return await coroutine
        finally:
            try:
                loop.remove_signal_handler(signal.SIGTERM)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


REPLY_CACHE = "reply_cache"


def keep_replies(cfg, out: Path, models) -> None:
    """Every reply kept in the run dir (unless reply_cache=false): `--resume` replays what was paid
    for instead of paying again."""
    if cfg.get("reply_cache", True):
        for model in models:
            if model is not None:
                model.use_reply_cache(out / REPLY_CACHE)


def close_replies(models) -> None:
    """The last step of a run, however it ended (after its status, usage and report are written, so
    a failing disk or a second Ctrl-C here cannot cost them): every kept reply on disk, stores closed."""
    for model in models:
        if model is not None:
            try:
                model.close_replies()
            except OSError as error:  # disk full: what a resume would replay is what got written
                logging.getLogger("promptrl").warning("%s", error)


def run_plan(cfg: DictConfig, output_dir) -> dict:
    """The dry run of `train`: build and check everything, call nothing, write plan.json."""
    from promptrl.experiment.plan import plan_train

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return plan_train(cfg, build_train(cfg), out)


def run_train(cfg: DictConfig, output_dir, progress: bool = True, log: Callable = print) -> dict:
    """The train recipe. Returns {"baseline", "final", "history", "best", "usage", "output_dir", "status"}."""
    return run_stoppable(_train(cfg, Path(output_dir), progress, log))


def _ending(error: BaseException) -> tuple[str, str]:
    """(status, reason) of a run stopped by `error`."""
    if isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)):
        return "interrupted", "stopped by SIGINT/SIGTERM; every file written so far is kept"
    text = one_line(error, 500)
    return "failed", text if isinstance(error, UserError) else f"{type(error).__name__}: {text}"


@dataclass
class TrainSetup:
    """Everything a train run is made of, built and checked before any LM call."""

    dataset: object
    train: object
    val: object
    test: object
    program: Program
    lm: LanguageModel
    optimizer: object
    teacher: LanguageModel | None
    budget: object
    reserve_final: bool
    callbacks: list
    training: bool


def build_train(cfg) -> TrainSetup:
    """Build a train run from its config and check everything that would stop it later, paying for
    nothing (the run and the dry run share this)."""
    check_run_keys(cfg)
    trust_configured_modules(cfg)
    dataset, train, val, test = build_splits(cfg)
    program, lm = build_program(cfg, dataset)
    reward, metrics = build_scorers(cfg, lm)
    optimizer, teacher = build_optimizer(cfg, lm)
    budget, reserve_final = build_budget(cfg)
    budget.watch("program", lm)
    budget.watch("optimizer", teacher)
    for judge_lm in judge_models([reward, *metrics], [lm]).values():
        budget.watch("judge", judge_lm)
    budget.validate()
    program.compile(reward=reward, optimizer=optimizer, metrics=metrics)
    program.metadata = {"task_name": cfg.task_name, "seed": cfg.seed, "dataset": container(cfg, "dataset"),
                        "data_sha256": dataset.content_sha256()}  # evaluate warns when the examples changed
    callbacks_cfg = container(cfg, "callbacks") or {}
    callbacks = [instantiate_node(node, f"callbacks.{name}") for name, node in callbacks_cfg.items() if node]
    check_monitors(program, callbacks, has_validation=True)
    training = optimizer is not None and cfg.epochs > 0
    if training and len(val) == 0:
        raise UserError("training needs validation data for the val_reward checkpoint; set dataset.val_size > 0")
    if training and len(train) == 0:
        raise UserError("training needs training examples; set dataset.train_size > 0 (or remove +optimizer)")
    return TrainSetup(dataset, train, val, test, program, lm, optimizer, teacher, budget, reserve_final, callbacks,
                      training)


async def _train(cfg, out: Path, progress: bool, log: Callable) -> dict:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    run_status = RunStatus(out, "train")
    try:
        setup = build_train(cfg)
        dataset, train, val, test = setup.dataset, setup.train, setup.val, setup.test
        program, lm, optimizer, teacher = setup.program, setup.lm, setup.optimizer, setup.teacher
        budget, reserve_final, callbacks, training = setup.budget, setup.reserve_final, setup.callbacks, setup.training
        _write_config(cfg, out)
        program.save(out / "initial.program.json")
        report_setup = run_setup(cfg, out, "train", dataset, {"train": len(train), "val": len(val), "test": len(test)},
                                 program, optimizer)
        chance = chance_level(program.reward, dataset.output_data_model, dataset.y_train, test.y)
        figure = {"reference": chance, "reward_name": report_setup["reward"]["name"]}  # what every plot names
        log(f"dataset {dataset.name}: train {len(train)}, val {len(val)}, test {len(test)} | "
            f"model {lm.model} | optimizer {type(optimizer).__name__ if optimizer else 'none (baseline only)'}")
        if optimizer is not None and cfg.epochs == 0:
            log("epochs=0: no training, baseline evaluations only")
        tracker = _start_tracking(cfg, out, "train")  # +logger=mlflow: once setup has checked the config
    except BaseException as error:
        run_status.end(*_ending(error))
        raise
    lms = {"program": lm, "optimizer": teacher, **judge_models([program.reward, *program.metrics], [lm])}
    keep_replies(cfg, out, lms.values())
    baseline = final = best = comparison = usage = None
    history: list[dict] = []
    status, reason, fitting, budget_stop = "failed", "", False, ""
    logger = HistoryLogger(out / "history.jsonl", out / "history.csv")
    try:
        run_status.phase("baseline")
        baseline = await run_evaluations(program, test, cfg, "baseline", out, progress, log, run_status)
        plots.plot_metrics_with_mean_and_std(baseline, out / "baseline.png", title=f"Baseline - {cfg.task_name}",
                                             **figure)
        if training:
            run_status.phase("fit")
            callbacks += [logger, *([tracker.callback()] if tracker else []),  # before a failure budget stops fit
                          FailureBudget(cfg.max_failure_rate, len(train), len(val), run_status)]
            callbacks += [ProgressBar("fit ")] if progress else []
            if reserve_final and budget.active:  # the final evaluations cost what the baseline cost
                budget.reserve(budget.spent())
            fitting = True
            try:
                await program.fit(train.x, train.y, validation_data=(val.x, val.y), epochs=cfg.epochs,
                                  batch_size=cfg.batch_size, callbacks=callbacks, seed=cfg.seed,
                                  validate_initial=True)
            except BudgetReached as reached:
                budget_stop = str(reached)
                log(f"{budget_stop}: training stopped; the best checkpoint so far is kept")
            fitting = False
            if budget_stop and not reserve_final:
                raise BudgetReached(budget_stop)
            budget.reserve({})
            if reserve_final:  # the final runs spend what was held back for them, and run in full
                budget.enabled = False
            program.save(out / "last.program.json")  # where training stopped, optimizer state included (resume)
            history = logger.records
            if any("reward" in record for record in history):  # at least one training epoch to draw
                plots.plot_history(history, out / "history.png", title=f"Training history - {cfg.task_name}", **figure)
            checkpoint = _best_checkpoint(callbacks)
            if checkpoint is not None:
                best = {"path": checkpoint.best_path, "epoch": checkpoint.best_epoch,
                        "monitor": checkpoint.monitor, "value": checkpoint.best}
                # Reload the best prompts into the live program (keeps its LM and usage counters).
                program.set_trainable_variables(Program.load(checkpoint.best_path, lm).trainable_variables)
                when = "the untrained program" if best["epoch"] < 0 else f"epoch {best['epoch'] + 1}"
                log(f"reloaded best checkpoint: {when}, {best['monitor']}={best['value']:.3f}")
            elif budget_stop:  # stopped before any validation: never evaluate prompts nobody validated
                program.set_trainable_variables(Program.load(out / "initial.program.json", lm).trainable_variables)
                log("no validated checkpoint before the budget stop: the final runs use the untrained program")
            run_status.phase("final")
            final = await run_evaluations(program, test, cfg, "final", out, progress, log, run_status)
            comparison = paired_comparison(baseline, final, seed=cfg.seed)
            atomic_write_json(out / "comparison.json", comparison)
            plots.plot_metrics_comparison_with_mean_and_std(
                {"baseline": baseline, "trained": final}, out / "comparison.png",
                title=f"Baseline vs trained - {cfg.task_name}", comparison=comparison, **figure)
        status, reason = ("budget_reached", budget_stop) if budget_stop else ("ok", "")
    except BudgetReached as reached:  # before any training, or training stopped without reserve_final
        status, reason = "budget_reached", str(reached)
        log(f"{reason}: run stopped; every file written so far is kept")
    except BaseException as error:
        status, reason = _ending(error)
        raise
    finally:
        try:
            if fitting or budget_stop:  # stopped in the middle of training: keep where it got to
                program.save(out / "last.program.json")
                history = logger.records
            usage = usage_report(lms, started, _embedders(program))
            if budget.active:
                usage["budget"] = budget.report()
            atomic_write_json(out / "usage.json", usage)
            notes = [] if optimizer else ["", "No optimizer: baseline evaluations only (add +optimizer=random_few_shot)."]
            best_checkpoint = _best_checkpoint(callbacks)
            write_report(out, f"promptrl train: {cfg.task_name}", {"baseline": baseline, "trained": final},
                         test_size=len(test), comparison=comparison, history=history, best=best, usage=usage,
                         program=program, status=status, notes=notes, reason=reason, setup=report_setup,
                         chance=chance,
                         prompts=saved_prompts(out, best_checkpoint.best_path if best_checkpoint else None,
                                               final is not None, training))
        finally:  # status.json never stays 'running' after the run ended, whatever failed above
            try:
                run_status.end(status, reason)
                _end_tracking(tracker, status, reason, {"baseline": baseline, "final": final},
                              comparison=comparison, usage=usage, history=history)
            finally:
                close_replies(lms.values())
    return {"baseline": baseline, "final": final, "comparison": comparison, "history": history, "best": best,
            "usage": usage, "output_dir": str(out), "status": run_status.data}


def run_evaluate(cfg: DictConfig, output_dir, progress: bool = True, log: Callable = print,
                 override_language_model: bool | list[str] = False) -> dict:
    """`override_language_model`: True replaces a checkpoint's LM by the config's; a list of
    keys changes only those settings of the checkpoint's LM (e.g. ["temperature"])."""
    return run_stoppable(_evaluate(cfg, Path(output_dir), progress, log, override_language_model))


def load_checkpoint(cfg, state: dict, language_model, override_language_model) -> Program:
    """The checkpoint's program, calling where the *config* says. Its model name and sampling
    settings are the file's unless the user chose a language model (`language_model=NAME` replaces
    it, `language_model.KEY=V` changes one setting); its endpoint and credentials always come from
    the config, or from the file with `trust_checkpoint_endpoint=true` (--trust-checkpoint-endpoint)."""
    if override_language_model is True:
        return Program.from_state(state, language_model)
    lm_config = container(cfg, "language_model")
    trust = bool(cfg.get("trust_checkpoint_endpoint"))
    changes = {key: lm_config[key] for key in override_language_model or [] if key in (*SETTING_KEYS, "model")}
    program = Program.from_state(state, endpoint=LanguageModel.endpoint_of(lm_config), trust_endpoint=trust)
    configured = provider_of(str(lm_config.get("model", "")))
    for saved in state["language_models"].values():
        # The file may not pick the provider that receives the configured (or environment) key.
        if not trust and "model" not in changes and provider_of(saved["model"]) != configured:
            raise UserError(
                f"the checkpoint's model '{saved['model']}' is not a '{configured}' model like the configured one; "
                f"to call it, name it: language_model.model={saved['model']} (its endpoint and key then come from "
                "your config and environment), or --trust-checkpoint-endpoint for a file you wrote")
    if changes:
        replaced = {id(m): m.clone(**changes) for m in program.language_models}
        for generator in program.generators:
            generator.language_model = replaced[id(generator.language_model)]
    return program


async def _evaluate(cfg, out: Path, progress: bool, log: Callable, override_language_model) -> dict:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    run_status = RunStatus(out, "evaluate")
    try:
        program, lm, test, dataset, notes, split_seed = _evaluation_setup(cfg, out, log, override_language_model)
        report_setup = run_setup(cfg, out, "evaluate", dataset, {"test": len(test)}, program, split_seed=split_seed)
        chance = chance_level(program.reward, dataset.output_data_model, dataset.y_train, test.y)
        tracker = _start_tracking(cfg, out, "evaluate")  # +logger=mlflow: once setup has checked the config
    except BaseException as error:
        run_status.end(*_ending(error))
        raise
    judges = judge_models([program.reward, *program.metrics], program.language_models)
    models = [*program.language_models, *judges.values()]
    keep_replies(cfg, out, models)
    result, status, reason, usage = None, "failed", "", None
    try:
        run_status.phase("evaluation")
        result = await run_evaluations(program, test, cfg, "evaluation", out, progress, log, run_status)
        plots.plot_metrics_with_mean_and_std(result, out / "evaluation.png", title=f"Evaluation - {cfg.task_name}",
                                             reference=chance, reward_name=report_setup["reward"]["name"])
        status = "ok"
    except BaseException as error:
        status, reason = _ending(error)
        raise
    finally:
        try:
            usage = usage_report({"program": lm, **judges}, started, _embedders(program))
            atomic_write_json(out / "usage.json", usage)
            write_report(out, f"promptrl evaluate: {cfg.checkpoint or cfg.task_name}", {"evaluation": result},
                         test_size=len(test), usage=usage, program=program, status=status,
                         notes=[""] + notes if notes else [], reason=reason, setup=report_setup, chance=chance)
        finally:
            try:
                run_status.end(status, reason)
                _end_tracking(tracker, status, reason, {"evaluation": result}, usage=usage)
            finally:
                close_replies(models)
    return {"evaluation": result, "usage": usage, "output_dir": str(out), "status": run_status.data}


def _evaluation_setup(cfg, out: Path, log: Callable, override_language_model):
    """The program to evaluate (the config's, or a checkpoint's) and the test split."""
    check_run_keys(cfg)
    trust_configured_modules(cfg)
    state = read_state(cfg.checkpoint) if cfg.checkpoint else None
    metadata = state["metadata"] if state else {}
    notes = []
    split_seed = cfg.seed
    if metadata.get("seed") not in (None, cfg.seed):
        # The splits of the seed it was trained with: another seed could put its training examples in the test split.
        split_seed = metadata["seed"]
        notes.append(f"Test split drawn with the checkpoint's training seed {split_seed} (runs use seed {cfg.seed}).")
    saved = metadata.get("dataset") if isinstance(metadata.get("dataset"), dict) else None
    split_cfg, adopted = cfg, {}
    if saved is not None:
        from hydra.core.hydra_config import HydraConfig


        keys = [override_key(o) for o in HydraConfig.get().overrides.task] \
            if HydraConfig.initialized() else []  # a config built in code: its values are adopted, with a note
        given = {k.removeprefix("dataset.") for k in keys if k.startswith("dataset.")}
        # The examples it was tested on in training: another test_pool, pool_seed or data seed could test on
        # examples it trained on.
        adopted = adopt_split_keys(saved, container(cfg, "dataset"), given)
        if adopted:
            split_cfg = OmegaConf.merge(cfg, {"dataset": adopted})
            held = ", ".join(f"dataset.{k}={v!r}" for k, v in adopted.items())
            notes.append(f"Test split held out as in training: {held} (the checkpoint's).")
    dataset, _, _, test = build_splits(split_cfg, seed=split_seed)
    program, lm = build_program(cfg, dataset)
    if state is not None:
        trained_on = describe_source(saved) if saved is not None else None
        evaluated_on = describe_source(container(cfg, "dataset"))
        if trained_on and trained_on != evaluated_on:
            notes.append(f"Warning: the checkpoint was trained on dataset '{trained_on}', evaluated on '{evaluated_on}'.")
        elif trained_on and metadata.get("data_sha256") not in (None, dataset.content_sha256()):
            notes.append(f"Warning: the checkpoint was trained on other examples of dataset '{trained_on}' (e.g. a "
                         "file edited, extended or replaced since): its test split may hold examples it was trained on.")
        program = load_checkpoint(cfg, state, lm, override_language_model)
        lm = program.language_models[0]
        where = lm.endpoint
        source = ("the checkpoint file" if cfg.get("trust_checkpoint_endpoint") and override_language_model is not True
                  else "the config")
        log(f"checkpoint model: {lm.model} at {where} (endpoint and credentials from {source})")
    for note in notes:  # the log level says it is a warning; the report keeps the note's own "Warning:"
        logging.getLogger("promptrl").warning(note.removeprefix("Warning: "))
    reward, metrics = build_scorers(cfg, lm)
    program.compile(reward=reward, metrics=metrics)
    _write_config(cfg, out, language_model=lm.get_config(), **({"dataset": container(split_cfg, "dataset")} if adopted
                                                                else {}))
    log(f"evaluating {cfg.checkpoint or program.name} on {dataset.name} test ({len(test)} examples), "
        f"{cfg.nb_runs} runs, model {lm.model}")
    return program, lm, test, dataset, notes, split_seed


# ---- experiment tracking (+logger=mlflow): the recipe's side of promptrl.tracking ---------------
def _start_tracking(cfg, out: Path, command: str):
    """The run's tracker, its run opened (None without a `logger` node). Called once setup has
    checked the config: a typo is a one-line error, not a FAILED run in the store. The default store
    goes in outputs/ of the directory promptrl was started from; a job of a sweep nests under the
    sweep's run."""
    if not cfg.get("logger"):
        return None
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    tracker = instantiate_node(cfg.logger, "logger")
    places = {}
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        places["store_root"] = Path(hydra_cfg.runtime.cwd) / "outputs"
        if hydra_cfg.mode == RunMode.MULTIRUN:
            places["sweep_dir"] = Path(hydra_cfg.sweep.dir)
    try:
        tracker.start(out, container(cfg), command=command, **places)
    except BaseException as error:  # a run created before the store failed does not stay RUNNING
        tracker.end(*_ending(error))
        raise
    return tracker


def _end_tracking(tracker, status: str, reason: str, phases: dict | None = None, *, comparison: dict | None = None,
                  usage: dict | None = None, history=()) -> None:
    """Close the tracker's run with the run's end numbers, as the sweep report names them."""
    if tracker is not None:
        from promptrl.experiment.results import run_summary

        tracker.end(status, reason, metrics=run_summary(phases or {}, status=status, comparison=comparison,
                                                        usage=usage, history=history), usage=usage)


def _best_checkpoint(callbacks) -> ProgramCheckpoint | None:
    """The checkpoint callback that has written a best checkpoint (also when the run stopped before reloading it)."""
    return next((c for c in callbacks if isinstance(c, ProgramCheckpoint) and c.best_path), None)


class FailureBudget(Callback):
    """Stops fit when an epoch's training or validation calls went unanswered beyond the budget."""

    def __init__(self, max_failure_rate: float, train_size: int, val_size: int, status: RunStatus):
        super().__init__()
        self.max_failure_rate, self.sizes, self.status = max_failure_rate, {"": train_size, "val_": val_size}, status

    def on_epoch_end(self, epoch, logs=None):
        for prefix, size in self.sizes.items():
            count = int((logs or {}).get(f"{prefix}infra_failures", 0))
            what = f"{'validation' if prefix else 'training'} epoch {epoch + 1}" if epoch >= 0 else "validation (untrained)"
            self.status.infra_failures(what, count, size)
            check_failure_budget(what, count, size, self.max_failure_rate)

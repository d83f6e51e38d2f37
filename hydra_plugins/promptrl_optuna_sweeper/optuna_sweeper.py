"""A Hydra sweeper on optuna 4: it asks optuna for `n_jobs` trials at a time, runs them as one
batch through Hydra's launcher (basic, joblib, Ray), and tells optuna each job's return value.

A job that raises, or returns something that is not a finite number (None, NaN), is told to
optuna as a failed trial and the sweep goes on. When the sweep ends, `optimization_results.yaml`
in the sweep dir holds the best parameters, the best value and every trial of this sweep.

Hydra imports this module whenever it scans its plugins (any Hydra app): optuna is imported only
when a sweep runs.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer, ValueType
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
DIRECTIONS = ("maximize", "minimize")


class SearchParam:
    """One swept key: its optuna distribution and how a sampled value is written back as an override.
    (A plain class: Hydra's plugin scan runs this module before it is in sys.modules, which a
    dataclass here would need.)"""

    def __init__(self, key: str, distribution: Any, texts: Optional[Dict[Any, str]] = None) -> None:
        self.key = key  # as in the override, with its prefix: `optimizer.k`, `+optimizer.foo`
        self.distribution = distribution  # an optuna distribution
        self.texts = texts  # categorical: choice -> its text in an override

    def override(self, value: Any) -> str:
        text = self.texts[value] if self.texts is not None else Transformer.str(value)
        return f"{self.key}={text}"


def search_param(override: Override) -> Optional[SearchParam]:
    """The search parameter of a sweep override (choice, range, interval, tag(log, interval));
    None for a plain value, which every trial gets as it is."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not override.is_sweep_override():
        return None
    key, sweep = override.get_key_element(), override.value()
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        raise ValueError(f"{override.input_line}: glob() is not supported by the optuna sweeper; list the choices")
    if override.is_choice_sweep():
        # optuna's categorical choices are primitives: a list or dict choice becomes its override text
        texts = {Transformer.encode(x): Transformer.str(x) for x in override.sweep_iterator()}
        return SearchParam(key, CategoricalDistribution(list(texts)), texts)
    if override.is_range_sweep():  # range(start, stop, step): stop excluded, as in Hydra's basic sweeper
        values = list(override.sweep_iterator())
        if not values:
            raise ValueError(f"{override.input_line}: the range is empty")
        low, high, step = min(values), max(values), abs(sweep.step)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in [*values, step]):
            return SearchParam(key, IntDistribution(low, high, step=step))
        return SearchParam(key, FloatDistribution(float(low), float(high), step=float(step)))
    if override.is_interval_sweep():  # interval(low, high), both ends included; int(interval(...)) for ints
        use_log = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return SearchParam(key, IntDistribution(sweep.start, sweep.end, log=use_log))
        return SearchParam(key, FloatDistribution(float(sweep.start), float(sweep.end), log=use_log))
    raise ValueError(f"{override.input_line}: not a sweep the optuna sweeper knows")


def search_space(overrides: Sequence[str]) -> tuple[list[SearchParam], list[str]]:
    """Split overrides into the search space and the overrides every trial gets as they are.
    A key given twice keeps its last value (the command line comes after `params`)."""
    parsed: dict[tuple, Override] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        ident = (override.key_or_group, override.package)
        parsed.pop(ident, None)
        parsed[ident] = override
    params, fixed = [], []
    for override in parsed.values():
        param = search_param(override)
        if param is None:
            fixed.append(override.input_line)
        else:
            params.append(param)
    return params, fixed


def job_value(ret) -> tuple[Optional[float], str]:
    """The objective of a finished job, or None and why it failed."""
    try:
        value = ret.return_value  # re-raises what the job raised
    except Exception as error:  # noqa: BLE001 - a failed job is a failed trial, not a failed sweep
        return None, f"the job raised {type(error).__name__}: {error}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"the job returned {value!r}, not a number"
    if not math.isfinite(number):
        return None, f"the job returned {number}"
    return number, ""


def _write_yaml(path: Path, data: dict) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump(data, out, sort_keys=False, allow_unicode=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OptunaSweeper(Sweeper):
    """`hydra/sweeper: optuna`; see config.py for what each argument means."""

    def __init__(self, direction: str = "maximize", n_trials: int = 20, n_jobs: int = 1, sampler: Any = None,
                 storage: Any = None, study_name: Optional[str] = None,
                 params: Optional[DictConfig | Dict[str, Any]] = None) -> None:
        direction = str(direction).lower()
        if direction not in DIRECTIONS:
            raise ValueError(f"hydra.sweeper.direction must be maximize or minimize, not {direction!r}")
        if int(n_trials) < 1 or int(n_jobs) < 1:
            raise ValueError(f"hydra.sweeper.n_trials and n_jobs must be at least 1 (got {n_trials}, {n_jobs})")
        self.direction, self.n_trials, self.n_jobs = direction, int(n_trials), int(n_jobs)
        self.sampler, self.storage, self.study_name = sampler, storage, study_name
        self.params = dict(params or {})
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.job_idx = config, hydra_context, 0
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def sweep(self, arguments: List[str]) -> list:
        import optuna

        assert self.config is not None and self.launcher is not None, "setup() first"
        params, fixed = search_space([f"{key}={value}" for key, value in self.params.items()] + list(arguments))
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                    direction=self.direction, load_if_exists=True)
        space = {p.key: p.distribution for p in params}
        log.info("optuna %s: study %s, %s, %d trials, %d at a time", optuna.__version__, study.study_name,
                 self.direction, self.n_trials, self.n_jobs)
        log.info("search space: %s", {key: repr(d) for key, d in space.items()} or "empty")

        returns, trials_done = [], []
        while len(trials_done) < self.n_trials:
            batch = min(self.n_jobs, self.n_trials - len(trials_done))
            trials = [study.ask(fixed_distributions=space) for _ in range(batch)]
            overrides = [tuple(fixed + [p.override(t.params[p.key]) for p in params]) for t in trials]
            self.validate_batch_is_legal(overrides)
            batch_returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            for number, (trial, ret) in enumerate(zip(trials, batch_returns), start=self.job_idx):
                trial.set_user_attr("job", number)
                value, why = job_value(ret)
                if value is None:
                    log.warning("trial %d (job %d) failed: %s", trial.number, number, why)
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, value)
                trials_done.append({"job": number, "trial": trial.number,
                                    "state": "complete" if value is not None else "failed",
                                    "value": value, "params": dict(trial.params)})
            self.job_idx += len(batch_returns)
            returns.extend(batch_returns)
        self._write_results(study, trials_done)
        return returns

    def _write_results(self, study, trials_done: list[dict]) -> None:
        import optuna

        completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        best = study.best_trial if completed else None
        results = {
            "name": "optuna",
            "study_name": study.study_name,
            "direction": self.direction,
            "best_params": dict(best.params) if best else {},
            "best_value": best.value if best else None,
            "best_job": best.user_attrs.get("job") if best else None,
            "n_trials": len(trials_done),
            "n_failed": sum(t["state"] == "failed" for t in trials_done),
            "trials": trials_done,
        }
        _write_yaml(self.sweep_dir / RESULTS_FILE, results)
        if best is None:
            log.warning("no trial completed; see %s", self.sweep_dir / RESULTS_FILE)
        else:
            log.info("best value %s with %s (job %s); see %s", best.value, best.params, results["best_job"],
                     self.sweep_dir / RESULTS_FILE)

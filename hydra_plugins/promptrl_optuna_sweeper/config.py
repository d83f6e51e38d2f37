"""The `hydra/sweeper: optuna` config node (what `hydra.sweeper.*` accepts)."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.promptrl_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    direction: str = "maximize"  # or minimize: what the job's return value should do
    n_trials: int = 20  # trials in all (each one a job)
    n_jobs: int = 1  # trials asked for, and launched, together: a batch for the launcher
    # Any optuna sampler, built by Hydra from its _target_ and arguments.
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    storage: Optional[Any] = None  # null: in memory; or an optuna storage URL, e.g. sqlite:///study.db
    study_name: Optional[str] = None  # with a storage, the study to create or continue
    # The search space, one Hydra sweep per key: choice(...), range(...), interval(...),
    # tag(log, interval(...)), int(interval(...)). A plain value is passed to every trial as is.
    params: Optional[Dict[str, Any]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf,
                             provider="promptrl_optuna_sweeper")

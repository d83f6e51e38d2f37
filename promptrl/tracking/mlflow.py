"""`+logger=mlflow`: one MLflow run per promptrl run; the jobs of a sweep nest under the sweep's run.

Logged: params (the resolved config flattened to `a.b.c` keys, secrets masked, values over
MLflow's length limit cut with a marker), per-epoch metrics (step = the history's epoch, 0 = the
untrained program's validation), the end numbers the sweep report shows, under its names (the
recipe passes `promptrl.experiment.results.run_summary`: `baseline_reward_mean`, `best_val_reward`,
`lm_calls`, `cost_usd`...), the usage per LM role, the status as a tag, and the run dir's files as
artifacts. The run ends FINISHED (ok, budget_reached), FAILED or KILLED (interrupted); its files are
logged in every case.

Where: `tracking_uri`, else $MLFLOW_TRACKING_URI (MLflow's own convention), else
`sqlite:///<outputs>/mlflow.db` with artifacts in `<outputs>/mlartifacts` - a database, because
recent MLflow refuses a plain file store unless MLFLOW_ALLOW_FILE_STORE=true.

`mlflow_run.json` in a run dir names its MLflow run: `train --resume` logs into the same run (the
epochs it replays are not logged twice; its end numbers are logged again, the latest wins). In a
sweep dir it names the sweep's run: every job, in this process or a launcher's, nests under it (and
logs into its experiment).

MLflow is imported when a logger is built, never at `import promptrl` (it takes seconds).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from pathlib import Path

from promptrl.callbacks import Callback
from promptrl.errors import UserError
from promptrl.io import atomic_write_json
from promptrl.secrets import scrub, scrub_config

RUN_FILE = "mlflow_run.json"
SKIPPED = {"reply_cache", RUN_FILE}  # not results: the replies `--resume` replays, and this pointer
INSTALL_HINT = "run `make install-mlflow` (or pip install 'promptrl[mlflow]')"
STATUSES = {"ok": "FINISHED", "budget_reached": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
MAX_KEY = 250  # MLflow's key length limit; the value limits are read from mlflow itself
log = logging.getLogger("promptrl")


def _mlflow():
    try:  # the package itself: a broken install fails here, before the run, not mid-run
        import mlflow
        import mlflow.tracking
    except ImportError as error:
        raise UserError(f"+logger=mlflow: MLflow cannot be imported ({error}); {INSTALL_HINT}") from None
    return mlflow.tracking.MlflowClient


def _key(name) -> str:
    """A config/metric name as an MLflow key (letters, digits, _ - . / : and spaces)."""
    key = re.sub(r"[^/\w.\- :]", "_", str(name)).strip("/")
    return key[:MAX_KEY] or "_"


def _text(value, limit: int | None) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if limit is not None and len(text) > limit:
        marker = f" ... [truncated: {len(text)} characters; the run's config.yaml has it whole]"
        text = text[:limit - len(marker)] + marker
    return text


def flatten(config: dict, max_value: int | None = None, prefix: str = "") -> dict[str, str]:
    """`{"a": {"b": 1}}` -> `{"a.b": "1"}`: MLflow params are flat strings. Lists and empty mappings
    stay one value (JSON); a value longer than `max_value` is cut, with a marker saying so."""
    flat = {}
    for name, value in config.items():
        key = f"{prefix}{_key(name)}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, max_value, f"{key}."))
        else:
            flat[key] = _text(value, max_value)
    return flat


def usage_metrics(usage: dict | None) -> dict:
    """Each LM role's usage (`usage/<role>/calls`, ...): the detail behind `lm_calls`, `tokens`, `cost_usd`."""
    metrics = {}
    for role, u in (usage or {}).get("language_models", {}).items():
        metrics[f"usage/{role}/calls"] = u["calls"]
        metrics[f"usage/{role}/tokens"] = u["prompt_tokens"] + u["completion_tokens"]
        metrics[f"usage/{role}/cost_usd"] = u["cost"]
        metrics[f"usage/{role}/cache_hits"] = u.get("cache_hits", 0)
        metrics[f"usage/{role}/failures"] = u.get("failures", 0)
    return metrics


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _first_line(error: BaseException, limit: int = 300) -> str:
    line = scrub((str(error).strip().splitlines() or [type(error).__name__])[0])
    if len(line) > limit:  # cut at a word, and say so
        line = line[:limit].rsplit(" ", 1)[0] + " ..."
    return line


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _sqlite_path(uri: str) -> Path:
    """sqlite:///relative/or//absolute/path.db?options -> the database file."""
    return Path(uri[len("sqlite:///"):].split("?", 1)[0]).resolve()


def _refused_folder(uri: str) -> bool:
    """A plain path or a file: URI (a Windows drive letter is a path), which MLflow refuses unless
    MLFLOW_ALLOW_FILE_STORE=true."""
    scheme = re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", uri) or uri.startswith("databricks")
    folder = uri.startswith("file:") or not scheme
    return folder and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1")


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class MLflowLogger:
    """Logs a promptrl run to MLflow (library use: `start`, `callback()`, `end`)."""

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = "promptrl", run_name: str | None = None,
                 log_artifacts: bool = True, tags: dict | None = None):
        _mlflow()  # a missing MLflow is one line before anything runs, not an error at the end
        self.tracking_uri, self.experiment_name, self.run_name = tracking_uri, str(experiment_name), run_name
        self.log_artifacts, self.tags = log_artifacts, dict(tags or {})
        self.client = self.run_id = self.run_dir = self._artifacts = None
        self._logged: set[tuple[str, int]] = set()

    # ---- where --------------------------------------------------------------------------------
    def store(self, store_root: Path | None = None) -> tuple[str, str | None]:
        """(tracking URI, artifact location of a new experiment). `store_root`: the default store's
        folder (the project's outputs/; default ./outputs)."""
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = f"sqlite:///{Path(store_root or 'outputs').resolve() / 'mlflow.db'}"
        artifacts = None
        if uri.startswith("sqlite:///"):  # artifacts beside the database, not in ./mlruns of whatever cwd
            artifacts = (_sqlite_path(uri).parent / "mlartifacts").as_uri()
        return uri, artifacts

    def _connect(self, uri: str, artifacts: str | None) -> None:
        if uri.startswith("sqlite:///"):
            _sqlite_path(uri).parent.mkdir(parents=True, exist_ok=True)
        elif uri.startswith(("http://", "https://")):
            import requests

            # MLflow retries an unreachable server for minutes; before a run starts, say so at once.
            try:
                requests.get(uri.rstrip("/") + "/health", timeout=10)
            except (requests.ConnectionError, requests.Timeout):
                raise UserError(f"MLflow server not reachable at {scrub(uri)}; start it or fix logger.tracking_uri "
                                "(or $MLFLOW_TRACKING_URI)") from None
        # MLflow's first use of a database logs each migration step at INFO: not the user's business.
        for name in ("alembic", "mlflow.store.db.utils"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client, self._artifacts = _mlflow()(tracking_uri=uri), artifacts

    def _experiment(self) -> str:
        name = self.experiment_name
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name, artifact_location=self._artifacts)
            except Exception:  # noqa: BLE001 - another job of the sweep created it first
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise UserError(f"the MLflow experiment '{name}' is deleted; restore it (`mlflow experiments restore "
                            f"--experiment-id {found.experiment_id}`) or pick another: logger.experiment_name=...")
        return found.experiment_id

    def _guard(self, uri: str, action):
        try:
            return action()
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 - the store is the user's to fix
            if _refused_folder(uri):  # MLflow's own message is a paragraph; the fix is one setting
                path = Path(uri[len("file:"):] if uri.startswith("file:") else uri).expanduser().resolve()
                raise UserError(f"mlflow: {scrub(uri)} is a folder store, which MLflow no longer accepts; use "
                                f"logger.tracking_uri=sqlite:///{path}/mlflow.db") from None
            raise UserError(f"mlflow: cannot log to {scrub(uri)}: {_first_line(error)}; check logger.tracking_uri "
                            "(or $MLFLOW_TRACKING_URI)") from None

    # ---- a run ---------------------------------------------------------------------------------
    def start(self, run_dir, params: dict, *, store_root: Path | None = None, sweep_dir: Path | None = None,
              command: str = "train") -> str:
        """Open the MLflow run of `run_dir` (the one it already has, on resume) and log `params`
        (a config tree; its secrets are masked here). A job of a sweep nests under the run named in
        `sweep_dir`/mlflow_run.json. Returns the run id."""
        self.run_dir = Path(run_dir)
        uri, artifacts = self.store(store_root)
        parent = _read(Path(sweep_dir) / RUN_FILE) if sweep_dir else None
        if parent and parent.get("tracking_uri") != scrub(uri):
            log.warning("mlflow: this job logs to %s, its sweep to %s: not nested", scrub(uri), parent["tracking_uri"])
            parent = None

        def open_run():
            self._connect(uri, artifacts)
            run = self._reopen(_read(self.run_dir / RUN_FILE), uri)
            if run is None:
                tags = {"promptrl.run_dir": str(self.run_dir.resolve()), "promptrl.command": command}
                if parent:
                    tags["mlflow.parentRunId"] = parent["run_id"]
                name = self.run_name or (f"{Path(sweep_dir).name}/{self.run_dir.name}" if parent else self.run_dir.name)
                experiment_id = parent["experiment_id"] if parent else self._experiment()
                run = self.client.create_run(experiment_id, tags={**tags, **self._user_tags()}, run_name=str(name))
            self.run_id = run.info.run_id
            self._log_params(params, run.data.params)
            atomic_write_json(self.run_dir / RUN_FILE, {"tracking_uri": scrub(uri), "experiment_id":
                                                        run.info.experiment_id, "run_id": self.run_id})
            return run

        run = self._guard(uri, open_run)
        log.info("mlflow: run %s in experiment '%s' at %s", self.run_id, self.experiment_name, scrub(uri))
        return run.info.run_id

    def _reopen(self, previous: dict | None, uri: str):
        """The run a resumed run dir already has (same store), marked running again."""
        if not previous or previous.get("tracking_uri") != scrub(uri):
            return None
        try:
            run = self.client.get_run(previous["run_id"])
        except Exception:  # noqa: BLE001 - deleted from the store since: start a new one
            return None
        if run.info.lifecycle_stage == "deleted":
            return None
        self.client.update_run(run.info.run_id, status="RUNNING")
        for key in run.data.metrics:  # what the first attempt logged is not logged twice
            self._logged.update((key, m.step) for m in self.client.get_metric_history(run.info.run_id, key))
        return run

    def _user_tags(self) -> dict:
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

        return {_key(k): _text(v, MAX_TAG_VAL_LENGTH) for k, v in scrub_config(self.tags).items()}

    def _log_params(self, config: dict, logged: dict) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        params = flatten(scrub_config(config), MAX_PARAM_VAL_LENGTH)
        # MLflow params cannot change: a resume with other overrides keeps the first values here.
        changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
        if changed:
            log.warning("mlflow: params changed on resume keep their first value in MLflow (config.yaml has the new "
                        "ones): %s", ", ".join(changed))
        new = [Param(k, v) for k, v in params.items() if k not in logged]
        for chunk in _chunks(new, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk)

    def log_metrics(self, metrics: dict, step: int = 0, once: bool = False) -> None:
        """Numbers only (None, booleans, NaN are left out); an MLflow error is a warning, never the run's end.
        `once`: skip a (metric, step) the run already has - the epochs a resumed run replays."""
        if self.run_id is None:
            return
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        now = int(time.time() * 1000)
        batch = [Metric(_key(k), float(v), now, int(step)) for k, v in metrics.items()
                 if _number(v) and not (once and (_key(k), int(step)) in self._logged)]
        try:
            for chunk in _chunks(batch, MAX_METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=chunk)
            self._logged.update((m.key, m.step) for m in batch)
        except Exception as error:  # noqa: BLE001 - the run dir still has every number
            log.warning("mlflow: metrics not logged (%s); the run dir has them", _first_line(error))

    def callback(self) -> Callback:
        """A fit callback: each epoch's logs, step = epoch as the history counts it (0: untrained)."""
        return _EpochMetrics(self)

    def end(self, status: str, reason: str = "", *, metrics: dict | None = None, usage: dict | None = None,
            files: list | None = None) -> None:
        """Log the end numbers (`metrics`, e.g. promptrl.experiment.results.run_summary's; `usage`:
        usage.json, logged per LM role), the status and the files (`files`, default: the whole run
        dir), then close the run: FINISHED, FAILED or KILLED."""
        if self.run_id is None:
            return
        from mlflow.entities import RunTag
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

        try:
            self.log_metrics({**(metrics or {}), **usage_metrics(usage)})
            tags = {"promptrl.status": status, "promptrl.reason": _text(scrub(reason or ""), MAX_TAG_VAL_LENGTH)}
            self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            if self.log_artifacts:
                self._log_files(files)
        except Exception as error:  # noqa: BLE001
            log.warning("mlflow: run %s not fully logged (%s); the run dir has everything", self.run_id,
                        _first_line(error))
        finally:
            try:
                self.client.set_terminated(self.run_id, STATUSES.get(status, "FAILED"))
            except Exception as error:  # noqa: BLE001
                log.warning("mlflow: run %s not closed (%s)", self.run_id, _first_line(error))
            self.run_id = None

    def _log_files(self, files: list | None) -> None:
        if files is None:  # the run dir, as it is laid out (temp files of atomic writes left out)
            files = [p for p in sorted(self.run_dir.iterdir()) if p.name not in SKIPPED and not p.name.startswith(".")]
        for path in map(Path, files):
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), path.name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))

    # ---- a sweep -------------------------------------------------------------------------------
    def start_sweep(self, sweep_dir, params: dict, *, store_root: Path | None = None) -> str:
        """The parent run of a sweep; its id goes to `sweep_dir`/mlflow_run.json, where each job
        (in this process or another) finds it."""
        self.run_dir = Path(sweep_dir)
        uri, artifacts = self.store(store_root)

        def open_run():
            self._connect(uri, artifacts)
            name = self.run_name or f"sweep {self.run_dir.name}"
            tags = {"promptrl.run_dir": str(self.run_dir.resolve()), "promptrl.command": "sweep", **self._user_tags()}
            run = self.client.create_run(self._experiment(), tags=tags, run_name=str(name))
            self.run_id = run.info.run_id
            self._log_params(params, {})
            atomic_write_json(self.run_dir / RUN_FILE, {"tracking_uri": scrub(uri), "experiment_id":
                                                        run.info.experiment_id, "run_id": self.run_id})
            return run

        run = self._guard(uri, open_run)
        log.info("mlflow: sweep run %s in experiment '%s' at %s", self.run_id, self.experiment_name, scrub(uri))
        return run.info.run_id


class _EpochMetrics(Callback):
    def __init__(self, tracker: MLflowLogger):
        super().__init__()
        self.tracker = tracker

    def on_epoch_end(self, epoch, logs=None):
        self.tracker.log_metrics(logs or {}, step=epoch + 1, once=True)

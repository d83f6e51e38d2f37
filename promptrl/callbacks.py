"""Callbacks for fit/evaluate: checkpointing, early stopping, history files, progress."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from promptrl.checks import check_number
from promptrl.errors import UserError
from promptrl.io import atomic_write_text

__all__ = ["Callback", "CallbackList", "ProgramCheckpoint", "EarlyStopping", "HistoryLogger", "ProgressBar"]


class Callback:
    def __init__(self):
        self.program = None

    def set_program(self, program) -> None:
        self.program = program

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, total): ...
    def on_test_batch_end(self, done): ...
    def on_test_end(self): ...


class CallbackList(Callback):
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks=None, program=None):
        super().__init__()
        self.callbacks = list(callbacks or [])
        for callback in self.callbacks:
            callback.set_program(program)


def _fan_out(hook: str):
    def call_all(self, *args, **kwargs):
        for callback in self.callbacks:
            getattr(callback, hook)(*args, **kwargs)

    return call_all


for _hook in [name for name in vars(Callback) if name.startswith("on_")]:
    setattr(CallbackList, _hook, _fan_out(_hook))


def _improved(mode: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def _monitored(logs, monitor: str, who: str) -> float:
    if monitor not in (logs or {}):
        available = ", ".join(sorted(logs or {})) or "none"
        raise KeyError(f"{who}: monitor '{monitor}' is not in the logs (available: {available}); "
                       "pass validation_data to fit for val_* keys")
    return float(logs[monitor])


class ProgramCheckpoint(Callback):
    """Save the program after an epoch; with `save_best_only`, only when `monitor` improved.

    `filepath` may hold `{epoch}` and any log key, e.g. `ckpt_{epoch}_{val_reward:.2f}.program.json`.
    """

    def __init__(self, filepath, monitor: str = "val_reward", mode: str = "max", save_best_only: bool = True):
        super().__init__()
        if mode not in ("max", "min"):
            raise UserError(f"ProgramCheckpoint mode must be 'max' or 'min', got {mode!r}")
        self.filepath = str(filepath)
        self.monitor = monitor
        self.mode = mode
        self.save_best_only = save_best_only
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_path: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs, self.monitor, "ProgramCheckpoint")
        if math.isnan(value):
            return
        improved = _improved(self.mode, value, self.best)
        if improved:
            self.best, self.best_epoch = value, epoch
        if improved or not self.save_best_only:
            path = self.filepath.format(epoch=epoch, **(logs or {}))
            self.program.save(path)
            if improved:
                self.best_path = path


class EarlyStopping(Callback):
    """Stop fit when `monitor` has not improved for `patience` epochs."""

    def __init__(self, monitor: str = "val_reward", patience: int = 2, mode: str = "max", min_delta: float = 0.0):
        super().__init__()
        check_number("EarlyStopping", "patience", patience, 1, integer=True)
        check_number("EarlyStopping", "min_delta", min_delta, 0)
        if mode not in ("max", "min"):
            raise UserError(f"EarlyStopping mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.best: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.stopped_epoch = None, 0, None

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if _improved(self.mode, value, self.best, self.min_delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.program.stop_training = True


class HistoryLogger(Callback):
    """Write the per-epoch logs as JSONL and CSV after every epoch (atomic rewrites).

    Epochs are numbered as people count them: 1..N, and 0 for the untrained program's validation
    (fit's `validate_initial`), the same numbers the report, the plot and the log use."""

    def __init__(self, jsonl_path="history.jsonl", csv_path="history.csv"):
        super().__init__()
        self.jsonl_path, self.csv_path = Path(jsonl_path), Path(csv_path) if csv_path else None
        self.records: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        self.records.append({"epoch": epoch + 1, **(logs or {})})
        atomic_write_text(self.jsonl_path, "".join(json.dumps(r) + "\n" for r in self.records))
        if self.csv_path:
            keys = list(dict.fromkeys(k for r in self.records for k in r))
            columns = sorted(keys, key=lambda k: (k != "epoch", k.startswith("val_")))  # epoch, train, val
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.records)
            atomic_write_text(self.csv_path, buffer.getvalue())


class ProgressBar(Callback):
    """A rich progress bar for fit (batches per epoch, then validation) and evaluate (examples).

    rich is imported only when a bar starts: the library itself does not depend on it."""

    def __init__(self, description: str = "", console=None):
        super().__init__()
        self.description = description
        self.console = console
        self._progress = None
        self._in_fit = False
        self._epoch_task = self._test_task = None
        self._steps = 0

    def _ensure_started(self):
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console)
            self._progress.start()
        return self._progress

    def _stop(self):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._epoch_task = self._test_task = None

    def on_train_begin(self, logs=None):
        self._in_fit = True
        self._steps = (logs or {}).get("steps", 0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_task = self._ensure_started().add_task(f"{self.description}epoch {epoch + 1}",
                                                           total=self._steps, info="")

    def on_batch_end(self, batch, logs=None):
        if self._epoch_task is not None:
            self._progress.update(self._epoch_task, advance=1, info=f"reward {(logs or {}).get('reward', 0):.3f}")

    def on_epoch_end(self, epoch, logs=None):
        task = self._epoch_task if epoch >= 0 else self._test_task  # epoch -1: the untrained program
        if task is not None and self._progress is not None:
            info = "  ".join(f"{k} {v:.3f}" for k, v in (logs or {}).items() if "reward" in k)
            self._progress.update(task, info=info)

    def on_train_end(self, logs=None):
        self._in_fit = False
        self._stop()

    def on_test_begin(self, total):
        if not self._in_fit:
            label = "evaluate"
        else:
            label = "  validate" if self._epoch_task is not None else "validate (untrained)"
        self._test_task = self._ensure_started().add_task(f"{self.description}{label}", total=total, info="")

    def on_test_batch_end(self, done):
        if self._test_task is not None:
            self._progress.update(self._test_task, completed=done)

    def on_test_end(self):
        if not self._in_fit:
            self._stop()

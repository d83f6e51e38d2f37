"""Synalinks' `synalinks.utils` plot names, as thin adapters over promptrl's plots.

    promptrl.utils.plot_program(program, to_folder="out", show_module_names=True, show_schemas=True,
                                show_trainable=True)                      # -> out/<program.name>.png
    promptrl.utils.plot_history(history, to_folder="out")                 # -> out/training_history.png
    promptrl.utils.plot_metrics_with_mean_and_std(baseline_metric_list, to_folder="out")
    promptrl.utils.plot_metrics_comparison_with_mean_and_std({"without_training": [...],
                                                              "with_training": [...]}, to_folder="out")

Same arguments and default file names as Synalinks (`to_file`, `to_folder`, `title`); each returns
the Path it wrote. The drawing is promptrl's (`promptrl.plots`, `promptrl.program_picture`), so
Synalinks' styling arguments (xlabel, ylabel, grid, show_values, rankdir, dpi, ...) are not taken:
promptrl writes the mean (± std when there are several runs) on the bars and draws the program top-down.
"""

from __future__ import annotations

from pathlib import Path

from promptrl.errors import UserError

__all__ = ["plot_history", "plot_metrics_comparison_with_mean_and_std", "plot_metrics_with_mean_and_std",
           "plot_program"]


def _target(to_file, to_folder) -> Path:
    path = Path(to_folder) / to_file if to_folder else Path(to_file)
    if path.suffix.lower() != ".png":
        raise UserError(f"{path}: promptrl writes plots as PNG; give to_file a .png name")
    return path


def _results(metrics) -> dict:
    """Synalinks passes the list of `evaluate()` dicts, one per run; promptrl's plots take
    `{"runs": [...]}` (a dict already in that form passes through)."""
    return metrics if isinstance(metrics, dict) else {"runs": list(metrics)}


def plot_program(program, to_file: str | None = None, to_folder: str | None = None, show_schemas: bool = False,
                 show_module_names: bool = False, show_trainable: bool = False) -> Path:
    """The program's graph as a PNG: module names, output data-model fields and trainable state
    (its size: examples, instruction length) when asked. `to_file` defaults to `<program.name>.png`."""
    from promptrl.program_picture import write_program_png

    return write_program_png(program, _target(to_file or f"{program.name}.png", to_folder),
                             show_module_names=show_module_names, show_schemas=show_schemas,
                             show_trainable=show_trainable)


def plot_history(history, to_file: str = "training_history.png", to_folder: str | None = None,
                 title: str = "Training history") -> Path:
    """Train and validation curves over epochs. `history` is what `program.fit` returns (or its
    `records()`, or a Keras-style `{"reward": [...], "val_reward": [...]}` dict)."""
    from promptrl.plots import plot_history as draw

    if isinstance(history, dict):  # Keras' history.history: one list per key
        keys = list(history)
        records = [{"epoch": i + 1, **{k: history[k][i] for k in keys}} for i in range(len(history[keys[0]]))] \
            if keys else []
    else:  # fit's History or its records: plots.history_records numbers the epochs as history.jsonl does
        records = history
    return draw(records, _target(to_file, to_folder), title=title)


def plot_metrics_with_mean_and_std(metrics_list, to_file: str = "evaluation_metrics_with_mean_and_std.png",
                                   to_folder: str | None = None,
                                   title: str = "Evaluation metrics with mean and std") -> Path:
    """One bar per metric, mean ± std over the runs. `metrics_list`: one `evaluate()` dict per run."""
    from promptrl.plots import plot_metrics_with_mean_and_std as draw

    return draw(_results(metrics_list), _target(to_file, to_folder), title=title)


def plot_metrics_comparison_with_mean_and_std(
        metrics_comparison_dict, to_file: str = "evaluation_metrics_comparison_with_mean_and_std.png",
        to_folder: str | None = None, title: str = "Metrics Comparison with Mean and Std") -> Path:
    """Grouped bars, one group per metric, one bar per label: `{"without_training": [run dicts],
    "with_training": [run dicts]}`."""
    from promptrl.plots import plot_metrics_comparison_with_mean_and_std as draw

    return draw({label: _results(m) for label, m in metrics_comparison_dict.items()},
                _target(to_file, to_folder), title=title)

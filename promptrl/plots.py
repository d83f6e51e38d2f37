"""PNG plots of training histories, evaluations and sweeps (the names users know from Synalinks).

Every public function saves one PNG (parent directories created, written atomically) and
returns its `Path`. Each has a `_figure_*` builder returning the matplotlib `Figure`, so
tests and notebooks can inspect or show it without touching the disk.

Figures are built with `matplotlib.figure.Figure` and rendered with the Agg canvas: pyplot
is never imported, so there is no display, no global backend switch for the caller (a user's
notebook keeps its backend), and no figure registry that could leak across many calls.
"""

from __future__ import annotations

import functools
import math
import io
from numbers import Number
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from promptrl.io import atomic_write_bytes

__all__ = [
    "plot_history",
    "plot_metrics_with_mean_and_std",
    "plot_metrics_comparison_with_mean_and_std",
    "plot_sweep",
]

DPI = 120
# Colour-blind friendly qualitative palette (matplotlib's default tab10).
COLORS = list(matplotlib.colormaps["tab10"].colors)
# Keys of a results/history dict that are counts, not scores in [0, 1].
NOT_METRICS = {"epoch", "failures", "infra_failures"}

_STYLE = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.alpha": 0.35,
    "grid.linestyle": ":",
}


# ----------------------------------------------------------------------------- helpers


def _styled(builder):
    """Build the figure under the module's style (font sizes, light grid, no top/right spines)."""

    @functools.wraps(builder)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_STYLE):
            return builder(*args, **kwargs)

    return wrapper


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    """Write `fig` as PNG to `path` atomically (temp file + rename) and release it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        fig.clear()
    return atomic_write_bytes(path, buffer.getvalue())


def _number(value) -> float:
    """`value` as a float, NaN when it is missing or not a number."""
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, Number):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, Number) and math.isfinite(float(value))


def _ordered_metrics(keys) -> list[str]:
    """Metric names in first-seen order, `reward` first, counts (`failures`, `epoch`) left out."""
    seen = list(dict.fromkeys(k for k in keys if k not in NOT_METRICS))
    return sorted(seen, key=lambda k: k != "reward")


def _unit_range(values) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    return all(-1e-9 <= v <= 1 + 1e-9 for v in finite)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.3g}"


def _mean_std(result: dict) -> tuple[dict[str, float], dict[str, float], int]:
    """Means, stds and number of runs of one results dict; computed from `runs` when absent."""
    runs = list(result.get("runs") or [])
    mean = dict(result.get("mean") or {})
    std = dict(result.get("std") or {})
    keys = list(mean) + [k for run in runs for k in run]
    for key in dict.fromkeys(keys):
        values = [_number(run.get(key)) for run in runs]
        values = [v for v in values if math.isfinite(v)]
        if key not in mean and values:
            mean[key] = float(np.mean(values))
        if key not in std and values:
            std[key] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan  # 1 run: no spread
    return ({k: _number(v) for k, v in mean.items()}, {k: _number(v) for k, v in std.items()}, len(runs))


def _y_limits(ax, lows, highs, label_room: float = 0.0) -> None:
    """0..1.05 for scores (ticks up to 1), widened only as much as the data and labels need."""
    lows = [v for v in lows if math.isfinite(v)] or [0.0]
    highs = [v for v in highs if math.isfinite(v)] or [1.0]
    bottom = min(0.0, min(lows))
    if bottom < 0:
        bottom -= 0.05 * (max(highs) - bottom or 1)
    top = max(highs)
    if top <= 1 + 1e-9 and bottom >= 0:
        ax.set_ylim(0, max(1.05, top + label_room))
        ax.set_yticks(np.linspace(0, 1, 6))
    else:
        span = (top - bottom) or 1.0
        ax.set_ylim(bottom, top + 0.08 * span + label_room * span)


def _bar_labels(ax, bars, means, stds, rotation: int = 0, fontsize: float = 9.5) -> None:
    """Write "mean ± std" just above each bar's error bar."""
    offset = 0.015 * (ax.get_ylim()[1] - ax.get_ylim()[0])
    for bar, mean, std in zip(bars, means, stds):
        if not math.isfinite(mean):
            continue
        spread = std if math.isfinite(std) else 0.0
        text = f"{_fmt(mean)} ± {_fmt(spread)}" if math.isfinite(std) else _fmt(mean)
        y = max(mean + spread, mean, 0.0) + offset
        ax.text(bar.get_x() + bar.get_width() / 2, y, text, ha="center", va="bottom",
                rotation=rotation, fontsize=fontsize, color="0.15")


def _short_names(params: list[str]) -> dict[str, str]:
    """`optimizer.k` -> `k`, unless two parameters would get the same short name."""
    short = {p: p.rsplit(".", 1)[-1] for p in params}
    counts: dict[str, int] = {}
    for name in short.values():
        counts[name] = counts.get(name, 0) + 1
    return {p: (s if counts[s] == 1 else p) for p, s in short.items()}


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def _overrides(row: dict) -> dict:
    """A sweep row's overrides as a dict; also accepts Hydra's `["key=value", ...]` list."""
    overrides = row.get("overrides") or {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, _, value = str(item).partition("=")
        parsed[key.lstrip("+~")] = _parse_value(value)
    return parsed


def _sort_values(values) -> list:
    unique = list(dict.fromkeys(values))
    return sorted(unique, key=lambda v: (0, float(v), "") if _is_number(v) else (1, 0.0, str(v)))


# ----------------------------------------------------------------------------- history


@_styled
def _figure_history(records: list[dict], title: str = "Training history") -> Figure:
    records = list(records)
    if not records:
        raise ValueError("plot_history: no records to plot (fit ran 0 epochs?)")
    keys = list(dict.fromkeys(k for r in records for k in r))
    paired = [k for k in keys if not k.startswith("val_") and f"val_{k}" in keys]
    if paired:
        metrics = _ordered_metrics(paired)
    else:  # fit without validation data: plot the train metrics alone
        metrics = _ordered_metrics(k for k in keys if not k.startswith("val_")
                                   and any(_is_number(r.get(k)) for r in records))
    xs = [int(r["epoch"]) if _is_number(r.get("epoch")) else i + 1 for i, r in enumerate(records)]

    def series(key: str) -> list[float]:
        return [_number(r.get(key)) for r in records]

    # Scores in [0, 1] share one panel (y 0..1.05); a metric on another scale gets its own panel.
    unit = [m for m in metrics if _unit_range(series(m) + series(f"val_{m}"))]
    panels = ([unit] if unit else []) + [[m] for m in metrics if m not in unit]
    fig = _new_figure(7.5, 4.3 if len(panels) == 1 else 1.2 + 2.6 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    colors = {m: COLORS[i % len(COLORS)] for i, m in enumerate(metrics)}
    for ax, panel in zip(axes, panels):
        for metric in panel:
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                if key in keys:
                    ax.plot(xs, series(key), linestyle=style, marker="o" if style == "-" else "s", markersize=5,
                            linewidth=2, color=colors[metric], label=key)
        values = series("val_reward")
        if "reward" in panel and any(math.isfinite(v) for v in values):
            best = int(np.nanargmax(values))  # the epoch ProgramCheckpoint(monitor="val_reward", mode="max") keeps
            ax.scatter([xs[best]], [values[best]], s=260, marker="o", facecolors="none", edgecolors="black",
                       linewidths=1.6, zorder=5, label=f"best val_reward (epoch {xs[best]})")
        if panel is unit:
            ax.set_ylim(0, 1.05)
        ax.set_ylabel("score" if panel is unit else panel[0])
        ax.grid(True)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax = axes[-1]
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(set(xs)) == 1:  # one epoch: a single visible point, centred
        ax.set_xlim(xs[0] - 1, xs[0] + 1)
        ax.set_xticks([xs[0]])
    axes[0].set_title(title)
    return fig


def plot_history(records: list[dict], path, title: str = "Training history") -> Path:
    """Train (solid) and validation (dashed) curves of each metric over epochs, as a PNG.

    `records` are the per-epoch dicts of `history.records()` / `history.jsonl`
    (`{"epoch": 1, "reward": .., "val_reward": .., ...}`, epochs as in history.jsonl: 1..N, and 0 for
    the untrained program's validation).
    Every metric with a `val_` twin is drawn, `reward` first; `failures` is a count and left out.
    The best `val_reward` epoch (the one a `ProgramCheckpoint` keeps) is starred.
    """
    return _save(_figure_history(records, title), path)


# ----------------------------------------------------------------------------- evaluation bars


@_styled
def _figure_metrics(results: dict, title: str = "Evaluation") -> Figure:
    mean, std, n_runs = _mean_std(results)
    metrics = _ordered_metrics(mean)
    if not metrics:
        raise ValueError("plot_metrics_with_mean_and_std: the results hold no metric (no 'mean' and no 'runs')")
    means = [mean[m] for m in metrics]
    stds = [std.get(m, math.nan) for m in metrics]

    fig = _new_figure(max(4.5, 1.3 + 1.4 * len(metrics)), 4.3)
    ax = fig.add_subplot()
    positions = np.arange(len(metrics))
    bars = ax.bar(positions, [0 if not math.isfinite(m) else m for m in means], width=0.6,
                  color=[COLORS[i % len(COLORS)] for i in range(len(metrics))],
                  yerr=[0 if not math.isfinite(s) else s for s in stds],
                  capsize=6, error_kw={"elinewidth": 1.5, "ecolor": "0.2"}, zorder=2)
    _y_limits(ax, [m - s for m, s in zip(means, stds) if math.isfinite(s)] + means,
              [m + (s if math.isfinite(s) else 0) for m, s in zip(means, stds)], label_room=0.1)
    _bar_labels(ax, bars, means, stds)
    ax.set_xticks(positions, metrics)
    ax.set_ylabel("mean ± std over runs")
    ax.grid(True, axis="y", zorder=0)
    full_title = f"{title} (n={n_runs} run{'s' if n_runs != 1 else ''})" if n_runs else title
    failures = mean.get("failures", math.nan)
    if math.isfinite(failures) and failures > 0:
        full_title += f"\nfailed predictions per run: {_fmt(failures)} ± {_fmt(std.get('failures', 0.0))}"
    ax.set_title(full_title)
    return fig


def plot_metrics_with_mean_and_std(results: dict, path, title: str = "Evaluation") -> Path:
    """One bar per metric: mean over the runs, std as error bar, "0.63 ± 0.05" above it.

    `results` is `{"runs": [{"reward": .., "f1_score": .., "failures": ..}, ...], "mean": {...},
    "std": {...}}` (mean/std are computed from `runs` when absent); `failures` is not a bar.
    """
    return _save(_figure_metrics(results, title), path)


# ----------------------------------------------------------------------------- comparison bars


@_styled
def _figure_comparison(results_by_label: dict[str, dict], title: str = "Comparison") -> Figure:
    if not results_by_label:
        raise ValueError("plot_metrics_comparison_with_mean_and_std: nothing to compare (empty dict)")
    summaries = {label: _mean_std(result) for label, result in results_by_label.items()}
    metrics = _ordered_metrics(k for mean, _, _ in summaries.values() for k in mean)
    if not metrics:
        raise ValueError("plot_metrics_comparison_with_mean_and_std: the results hold no metric")
    labels = list(summaries)
    n_labels = len(labels)
    group_width = 0.8
    width = group_width / n_labels
    many = n_labels > 3  # value labels would collide side by side: write them vertically

    fig = _new_figure(max(5.5, 1.5 + len(metrics) * n_labels * (0.55 if many else 1.0)), 4.6)
    ax = fig.add_subplot()
    positions = np.arange(len(metrics))
    all_bars, lows, highs = [], [], []
    for i, label in enumerate(labels):
        mean, std, n_runs = summaries[label]
        means = [mean.get(m, math.nan) for m in metrics]
        stds = [std.get(m, math.nan) for m in metrics]
        offsets = positions - group_width / 2 + width * (i + 0.5)
        bars = ax.bar(offsets, [m if math.isfinite(m) else 0 for m in means], width=width * 0.92,
                      color=COLORS[i % len(COLORS)], label=f"{label} (n={n_runs})" if n_runs else str(label),
                      yerr=[s if math.isfinite(s) else 0 for s in stds], capsize=4,
                      error_kw={"elinewidth": 1.3, "ecolor": "0.2"}, zorder=2)
        all_bars.append((bars, means, stds))
        lows += [m - s for m, s in zip(means, stds) if math.isfinite(m) and math.isfinite(s)] + means
        highs += [m + (s if math.isfinite(s) else 0) for m, s in zip(means, stds)]
    _y_limits(ax, lows, highs, label_room=0.3 if many else 0.1)
    for bars, means, stds in all_bars:
        _bar_labels(ax, bars, means, stds, rotation=90 if many else 0, fontsize=9 if many else 9.5)
    ax.set_xticks(positions, metrics)
    ax.set_ylabel("mean ± std over runs")
    ax.grid(True, axis="y", zorder=0)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_metrics_comparison_with_mean_and_std(results_by_label: dict[str, dict], path,
                                              title: str = "Comparison") -> Path:
    """Grouped bars: metrics on the x axis, one bar per label (e.g. baseline / trained).

    `results_by_label` maps a label to a results dict as taken by `plot_metrics_with_mean_and_std`.
    """
    return _save(_figure_comparison(results_by_label, title), path)


# ----------------------------------------------------------------------------- sweeps


def _sweep_layout(rows: list[dict], params: list[str] | None) -> tuple[list[str], list[dict]]:
    overrides = [_overrides(row) for row in rows]
    if params is None:
        names = list(dict.fromkeys(k for o in overrides for k in o))
        params = [p for p in names if len({repr(o.get(p)) for o in overrides}) > 1]
    return list(params), overrides


def _job_ok(row: dict, value_key: str) -> bool:
    return row.get("status", "ok") == "ok" and _is_number(row.get(value_key))


@_styled
def _figure_sweep(rows: list[dict], value_key: str = "final_reward_mean", std_key: str | None = "final_reward_std",
                  params: list[str] | None = None, title: str = "Sweep") -> Figure:
    rows = list(rows)
    if not rows:
        raise ValueError("plot_sweep: no sweep jobs to plot")
    params, overrides = _sweep_layout(rows, params)
    short = _short_names(params)
    if len(params) == 2:
        return _sweep_heatmap(rows, overrides, params, short, value_key, std_key, title)
    return _sweep_bars(rows, overrides, params, short, value_key, std_key, title)


def _sweep_heatmap(rows, overrides, params, short, value_key, std_key, title) -> Figure:
    p_row, p_col = params
    row_values = _sort_values(o.get(p_row) for o in overrides)
    col_values = _sort_values(o.get(p_col) for o in overrides)
    r_index = {repr(v): i for i, v in enumerate(row_values)}
    c_index = {repr(v): i for i, v in enumerate(col_values)}
    cells: dict[tuple[int, int], list[tuple[float, float]]] = {}
    failed: set[tuple[int, int]] = set()
    for row, o in zip(rows, overrides):
        cell = (r_index[repr(o.get(p_row))], c_index[repr(o.get(p_col))])
        if _job_ok(row, value_key):
            std = _number(row.get(std_key)) if std_key else math.nan
            cells.setdefault(cell, []).append((float(row[value_key]), std))
        else:
            failed.add(cell)
    grid = np.full((len(row_values), len(col_values)), np.nan)
    spread = np.full_like(grid, np.nan)
    for (i, j), values in cells.items():  # repeated jobs of a cell: their mean
        grid[i, j] = np.mean([v for v, _ in values])
        stds = [s for _, s in values if math.isfinite(s)]
        spread[i, j] = np.mean(stds) if stds else np.nan

    finite = grid[np.isfinite(grid)]
    unit = finite.size == 0 or _unit_range(finite.tolist())
    vmin, vmax = (0.0, 1.0) if unit else (float(finite.min()), float(finite.max()))
    fig = _new_figure(max(4.8, 2.2 + 1.25 * len(col_values)), max(3.6, 1.6 + 0.8 * len(row_values)))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            value = grid[i, j]
            if math.isfinite(value):
                text = _fmt(value) + (f"\n± {_fmt(spread[i, j])}" if math.isfinite(spread[i, j]) else "")
                r, g, b, _ = cmap((value - vmin) / ((vmax - vmin) or 1.0))
                color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=10)
            elif (i, j) in failed:
                ax.text(j, i, "failed", ha="center", va="center", color="firebrick", fontsize=10)
    ax.set_xticks(range(len(col_values)), [str(v) for v in col_values])
    ax.set_yticks(range(len(row_values)), [str(v) for v in row_values])
    ax.set_xlabel(p_col)
    ax.set_ylabel(p_row)
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    fig.colorbar(image, ax=ax, label=value_key, shrink=0.9)
    ax.set_title(title)
    return fig


def _sweep_bars(rows, overrides, params, short, value_key, std_key, title) -> Figure:
    def parts(o: dict) -> list[str]:
        shown = params or list(o)
        return [f"{short.get(p, p)}={o.get(p)}" for p in shown if p in o] or ["(defaults)"]

    labels = [", ".join(parts(o)) for o in overrides]
    ok = [_job_ok(row, value_key) for row in rows]
    values = [float(row[value_key]) if good else math.nan for row, good in zip(rows, ok)]
    stds = [_number(row.get(std_key)) if (good and std_key) else math.nan for row, good in zip(rows, ok)]

    # Tick labels: "k=1, k_best=5" when it fits under its bar, else one parameter per line,
    # else slanted. ~0.085 in per character at the 10 pt tick font.
    width = max(5.0, 1.5 + 0.9 * len(rows))
    slot = (width - 1.2) / len(rows)
    rotate = False
    if max(len(s) for s in labels) * 0.085 > slot:
        needed = max(len(p) for o in overrides for p in parts(o)) * 0.085 + 0.15
        if 1.2 + needed * len(rows) <= 14:  # widen the figure (up to 14 in) rather than slant
            width = max(width, 1.2 + needed * len(rows))
            labels = ["\n".join(parts(o)) for o in overrides]
        else:
            rotate = True
    fig = _new_figure(width, 4.6)
    ax = fig.add_subplot()
    positions = np.arange(len(rows))
    _y_limits(ax, [v - s for v, s in zip(values, stds) if math.isfinite(s)] + values,
              [v + (s if math.isfinite(s) else 0) for v, s in zip(values, stds)], label_room=0.1)
    marker_height = 0.04 * (ax.get_ylim()[1] - ax.get_ylim()[0])
    heights = [v if good else marker_height for v, good in zip(values, ok)]
    bars = ax.bar(positions, heights, width=0.65, zorder=2,
                  color=[COLORS[0] if good else "none" for good in ok],
                  edgecolor=[COLORS[0] if good else "firebrick" for good in ok],
                  yerr=[s if math.isfinite(s) else 0 for s in stds], capsize=5,
                  error_kw={"elinewidth": 1.4, "ecolor": "0.2"})
    for bar, good, row in zip(bars, ok, rows):
        if not good:
            bar.set_hatch("///")
            status = row.get("status", "ok")
            bar.set_label(None)
            ax.text(bar.get_x() + bar.get_width() / 2, marker_height * 1.3,
                    "failed" if status != "ok" else "no value", ha="center", va="bottom",
                    color="firebrick", fontsize=9.5)
    _bar_labels(ax, [b for b, good in zip(bars, ok) if good], [v for v, g in zip(values, ok) if g],
                [s for s, g in zip(stds, ok) if g])
    ax.set_xticks(positions, labels, rotation=35 if rotate else 0, ha="right" if rotate else "center",
                  rotation_mode="anchor")
    ax.set_ylabel(value_key + (f" (± {std_key})" if std_key else ""))
    ax.grid(True, axis="y", zorder=0)
    ax.set_title(title)
    return fig


def plot_sweep(rows: list[dict], path, value_key: str = "final_reward_mean", std_key: str | None = "final_reward_std",
               params: list[str] | None = None, title: str = "Sweep") -> Path:
    """One sweep's result: a heatmap when two parameters vary (a grid), bars otherwise.

    `rows` are the sweep's jobs, `{"overrides": {"optimizer.k": 1, ...}, "final_reward_mean": ..,
    "final_reward_std": .., "status": "ok"}` (overrides may also be Hydra's `["key=value"]` list).
    `params` are the parameters to lay out (default: those that vary across jobs). Heatmap cells
    with no successful job stay blank ("failed" when a job failed there); failed jobs in the bar
    chart are a short hatched red bar labelled "failed".
    """
    return _save(_figure_sweep(rows, value_key, std_key, params, title), path)

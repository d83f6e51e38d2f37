"""PNG plots of training histories, evaluations and sweeps (the names users know from Synalinks).

Every public function saves one PNG (parent directories created, written atomically) and
returns its `Path`. Each has a `_figure_*` builder returning the matplotlib `Figure`, so
tests and notebooks can inspect or show it without touching the disk.

Figures are built with `matplotlib.figure.Figure` and rendered with the Agg canvas: pyplot
is never imported, so there is no display, no global backend switch for the caller (a user's
notebook keeps its backend), and no figure registry that could leak across many calls.

What a reader must not misread: the reward has a panel of its own (a metric equal to it cannot
hide it), one run shows no "± 0" spread, failed predictions are given as rates with their
denominator, a chance line is labelled in the legend, value labels never overlap (they turn
vertical and the axis makes room for them), and a sweep is laid out by the score arms are
chosen by (`val_reward`), the test score shown apart.
"""

from __future__ import annotations

import functools
import io
import math
from numbers import Number
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from promptrl.io import atomic_write_bytes
from promptrl.overrides import parse_overrides

__all__ = [
    "plot_history",
    "plot_metrics_with_mean_and_std",
    "plot_metrics_comparison_with_mean_and_std",
    "plot_sweep",
]

DPI = 120
# Colour-blind friendly qualitative palette (matplotlib's default tab10).
COLORS = list(matplotlib.colormaps["tab10"].colors)
REFERENCE_COLOR = "0.35"
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
        with matplotlib.rc_context(_STYLE):
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


def _count(value: float) -> str:
    """A per-run count: 3, 10.5."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _value_label(mean: float, std: float) -> str:
    """"0.63 ± 0.05"; "0.63" when there is no spread to show (one run: no spread is not zero spread)."""
    return f"{_fmt(mean)} ± {_fmt(std)}" if math.isfinite(std) else _fmt(mean)


def _mean_std(result: dict) -> tuple[dict[str, float], dict[str, float], int]:
    """Means, stds and number of runs of one results dict; computed from `runs` when absent.
    With a single run every std is NaN: nothing says how much it would vary."""
    runs = list(result.get("runs") or [])
    mean = dict(result.get("mean") or {})
    std = dict(result.get("std") or {})
    n_runs = int(result.get("nb_runs") or len(runs))
    keys = list(mean) + [k for run in runs for k in run]
    for key in dict.fromkeys(keys):
        values = [_number(run.get(key)) for run in runs]
        values = [v for v in values if math.isfinite(v)]
        if key not in mean and values:
            mean[key] = float(np.mean(values))
        if key not in std and values:
            std[key] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    mean = {k: _number(v) for k, v in mean.items()}
    std = {k: (math.nan if n_runs == 1 else _number(v)) for k, v in std.items()}
    return mean, std, n_runs


def _examples(result: dict) -> int | None:
    """How many test examples each run scored (from the per-example rewards), if known."""
    rewards = result.get("rewards") or []
    return len(rewards[0]) if rewards and rewards[0] is not None else None


def failure_rate_text(result: dict, key: str = "failures") -> str | None:
    """"10.5 of 12 per run (88%)": failed predictions (no valid output, scored 0; or `key`, e.g.
    infra_failures) as a rate with its denominator; None when the results do not count them."""
    mean, _, _ = _mean_std(result)
    failures = mean.get(key, math.nan)
    if not math.isfinite(failures):
        return None
    return rate_text(failures, _examples(result))


def rate_text(count: float, examples: int | None) -> str:
    """A per-run count with its denominator: "10.5 of 12 per run (88%)"."""
    if not examples:
        return f"{_count(count)} per run"
    return f"{_count(count)} of {examples} per run ({count / examples:.0%})"


def _runs_text(n_runs: int) -> str:
    return f"{n_runs} run{'s' if n_runs != 1 else ''}"


def _y_limits(ax, lows, highs) -> None:
    """0..1.05 for scores (ticks up to 1), widened only as much as the data need; value labels
    get their room later (`_fit_value_labels`), measured, not guessed."""
    lows = [v for v in lows if math.isfinite(v)] or [0.0]
    highs = [v for v in highs if math.isfinite(v)] or [1.0]
    bottom = min(0.0, min(lows))
    if bottom < 0:
        bottom -= 0.05 * (max(highs) - bottom or 1)
    top = max(highs)
    if top <= 1 + 1e-9 and bottom >= 0:
        ax.set_ylim(0, 1.05)
        ax.set_yticks(np.linspace(0, 1, 6))
    else:
        span = (top - bottom) or 1.0
        ax.set_ylim(bottom, top + 0.08 * span)


def _boxes(fig: Figure, texts) -> list:
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts]


def boxes_overlap(a, b, tolerance: float = 0.5) -> bool:
    """Whether two window extents overlap by more than `tolerance` pixels (touching is fine)."""
    return (a.x0 < b.x1 - tolerance and b.x0 < a.x1 - tolerance
            and a.y0 < b.y1 - tolerance and b.y0 < a.y1 - tolerance)


def _any_overlap(boxes) -> bool:
    return any(boxes_overlap(boxes[i], boxes[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes)))


def _yerr(stds):
    """Error bars only where there is a spread (no flat "± 0" cap for a single run)."""
    return [s if math.isfinite(s) else np.nan for s in stds] if any(math.isfinite(s) for s in stds) else None


def _bar_labels(ax, bars, means, stds, fontsize: float = 9.5) -> list:
    """Write "mean ± std" just above each bar's error bar; returns the text artists."""
    offset = 0.015 * (ax.get_ylim()[1] - ax.get_ylim()[0])
    texts = []
    for bar, mean, std in zip(bars, means, stds):
        if not math.isfinite(mean):
            continue
        spread = std if math.isfinite(std) else 0.0
        y = max(mean + spread, mean, 0.0) + offset
        texts.append(ax.text(bar.get_x() + bar.get_width() / 2, y, _value_label(mean, std), ha="center",
                             va="bottom", fontsize=fontsize, color="0.15", rotation_mode="anchor"))
    return texts


def _fit_value_labels(fig: Figure, ax, texts) -> None:
    """Value labels above bars: vertical when side by side they would collide (neighbouring bars
    of similar height), then the y axis raised just enough that the highest label fits inside."""
    texts = [t for t in texts if t.get_text()]
    if not texts:
        return
    fig.canvas.draw()
    if _any_overlap(_boxes(fig, texts)):
        for text in texts:  # rotated about its anchor: the label starts at the bar top and reads upwards
            text.set(rotation=90, ha="left", va="center")
    for _ in range(4):  # the axes height moves a little as the layout settles
        fig.canvas.draw()
        frame = ax.get_window_extent()
        boxes = _boxes(fig, texts)
        if max(b.y1 for b in boxes) <= frame.y1 - 2:
            return
        bottom, top = ax.get_ylim()
        height = frame.height
        needed = top
        for text, box in zip(texts, boxes):
            anchor = text.get_position()[1]
            room = height - box.height - 6  # pixels left for the anchor once the label sits above it
            if room > 0:
                needed = max(needed, bottom + (anchor - bottom) * height / room)
        ax.set_ylim(bottom, needed * 1.01 if needed > 0 else needed)


def _tick_labels(metrics: list[str], reward_name: str | None) -> list[str]:
    """The reward's bar says which reward it is ("reward\n(exact_match)")."""
    return [f"reward\n({reward_name})" if m == "reward" and reward_name and reward_name != "reward" else m
            for m in metrics]


def _reference_segment(ax, reference: dict | None, x0: float, x1: float):
    """A chance / majority-class line over [x0, x1] (the reward's bars), named in the legend."""
    if not reference or not _is_number(reference.get("value")):
        return None
    return ax.hlines(reference["value"], x0, x1, colors=REFERENCE_COLOR, linestyles=(0, (2, 2)), linewidth=1.8,
                     zorder=3, label=reference.get("label", "chance"))


def _short_names(params: list[str]) -> dict[str, str]:
    """`optimizer.k` -> `k`, unless two parameters would get the same short name."""
    short = {p: p.rsplit(".", 1)[-1] for p in params}
    counts: dict[str, int] = {}
    for name in short.values():
        counts[name] = counts.get(name, 0) + 1
    return {p: (s if counts[s] == 1 else p) for p, s in short.items()}


def _overrides(row: dict) -> dict:
    """A sweep row's overrides as a dict; also accepts Hydra's `["key=value", ...]` list."""
    overrides = row.get("overrides") or {}
    if isinstance(overrides, dict):
        return dict(overrides)
    return parse_overrides(overrides)


def _sort_values(values) -> list:
    unique = list(dict.fromkeys(values))
    return sorted(unique, key=lambda v: (0, float(v), "") if _is_number(v) else (1, 0.0, str(v)))


# ----------------------------------------------------------------------------- history


def history_records(records) -> list[dict]:
    """Per-epoch records numbered as history.jsonl numbers them: 1..N, 0 for the untrained program.

    Takes `history.records()` (or the `History` itself), `history.jsonl` rows or a HistoryLogger's
    records. `History.records()` counts epochs from 0 like Keras' index; the untrained program's
    record (epoch 0 in history.jsonl) holds validation keys only, so an epoch-0 record with training
    metrics means 0-based numbering, shifted here so the first trained epoch is "epoch 1"."""
    if hasattr(records, "records"):
        records = records.records()
    records = [dict(r) for r in records]
    zero_based = any(r.get("epoch") == 0 and any(k != "epoch" and not k.startswith("val_") for k in r)
                     for r in records)
    if zero_based:
        records = [{**r, "epoch": r["epoch"] + 1} if _is_number(r.get("epoch")) else r for r in records]
    return records


def _same_series(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or math.isclose(x, y, abs_tol=1e-12)
                                    for x, y in zip(a, b))


@_styled
def _figure_history(records, title: str = "Training history", reward_name: str | None = None,
                    reference: dict | None = None) -> Figure:
    records = history_records(records)
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

    # The reward has a panel of its own: a metric equal to it (F1 vs ExactMatch on a one-word label)
    # would otherwise be drawn over it. Scores in [0, 1] share the next panel; a metric on another
    # scale gets its own.
    others = [m for m in metrics if m != "reward"]
    unit = [m for m in others if _unit_range(series(m) + series(f"val_{m}"))]
    panels = ([["reward"]] if "reward" in metrics else []) + ([unit] if unit else []) \
        + [[m] for m in others if m not in unit]
    fig = _new_figure(7.8, 4.3 if len(panels) == 1 else 1.4 + 2.7 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    colors = {m: COLORS[i % len(COLORS)] for i, m in enumerate(metrics)}
    for ax, panel in zip(axes, panels):
        for metric in panel:
            same = metric != "reward" and _same_series(series(metric), series("reward")) \
                and _same_series(series(f"val_{metric}"), series("val_reward"))
            for key, val in ((metric, False), (f"val_{metric}", True)):
                if key not in keys:
                    continue
                values = series(key)
                points = [(x, v) for x, v in zip(xs, values) if math.isfinite(v)]
                lone = len(points) == 1
                ax.plot(xs, values, linestyle="--" if val else "-", marker="s" if val else "o",
                        markersize=9 if lone else 5, linewidth=2, color=colors[metric], zorder=4 if val else 3,
                        label=key + (" (= reward at every epoch)" if same else ""))
                if lone:  # a single point reads as a stray dot: give it its value
                    x, v = points[0]
                    ax.annotate(_fmt(v), (x, v), xytext=(10 if val else -10, 0), textcoords="offset points",
                                ha="left" if val else "right", va="center", fontsize=9.5, color=colors[metric])
        if panel == ["reward"]:
            values = series("val_reward")
            if any(math.isfinite(v) for v in values):
                best = int(np.nanargmax(values))  # the epoch ProgramCheckpoint(monitor="val_reward") keeps
                when = "untrained" if xs[best] == 0 else f"epoch {xs[best]}"
                ax.scatter([xs[best]], [values[best]], s=260, marker="o", facecolors="none", edgecolors="black",
                           linewidths=1.6, zorder=5, label=f"best val_reward ({when})")
            if reference and _is_number(reference.get("value")):
                ax.axhline(reference["value"], color=REFERENCE_COLOR, linestyle=(0, (2, 2)), linewidth=1.6,
                           zorder=2, label=reference.get("label", "chance"))
            ax.set_ylabel("reward" + (f"\n({reward_name})" if reward_name and reward_name != "reward" else ""))
        else:
            ax.set_ylabel("metric" if panel is unit else panel[0])
        if panel == ["reward"] or panel is unit:
            ax.set_ylim(0, 1.05)
        ax.grid(True)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax = axes[-1]
    ax.set_xlabel("epoch (solid: train, dashed: validation)" if any(k.startswith("val_") for k in keys) else "epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "0\nuntrained" if v == 0 else f"{v:.0f}"))
    low, high = min(xs), max(xs)
    margin = 1.0 if low == high else (0.5 if high - low <= 3 else 0.3)
    ax.set_xlim(low - margin, high + margin)
    if low == high:
        ax.set_xticks([low])
    axes[0].set_title(title)
    return fig


def plot_history(records, path, title: str = "Training history", reward_name: str | None = None,
                 reference: dict | None = None) -> Path:
    """Train (solid) and validation (dashed) curves over epochs, as a PNG: the reward in the top
    panel, the metrics below it (so a metric equal to the reward cannot hide it).

    `records` are the per-epoch dicts of `history.jsonl` (epochs 1..N, 0 for the untrained
    program's validation) or of `history.records()` / the `History` itself (0-based: shown 1..N).
    `failures` is a count and left out. The best `val_reward` epoch (the one a `ProgramCheckpoint`
    keeps) is circled. `reward_name` names the reward on its axis; `reference`
    (`{"value": 0.5, "label": "chance ..."}`) draws a labelled chance line in the reward panel.
    """
    return _save(_figure_history(records, title, reward_name, reference), path)


# ----------------------------------------------------------------------------- evaluation bars


@_styled
def _figure_metrics(results: dict, title: str = "Evaluation", reference: dict | None = None,
                    reward_name: str | None = None) -> Figure:
    mean, std, n_runs = _mean_std(results)
    metrics = _ordered_metrics(mean)
    if not metrics:
        raise ValueError("plot_metrics_with_mean_and_std: the results hold no metric (no 'mean' and no 'runs')")
    means = [mean[m] for m in metrics]
    stds = [std.get(m, math.nan) for m in metrics]

    fig = _new_figure(max(6.4, 1.3 + 1.4 * len(metrics)), 4.6)
    ax = fig.add_subplot()
    positions = np.arange(len(metrics))
    bars = ax.bar(positions, [0 if not math.isfinite(m) else m for m in means], width=0.6,
                  color=[COLORS[i % len(COLORS)] for i in range(len(metrics))],
                  yerr=_yerr(stds), capsize=6, error_kw={"elinewidth": 1.5, "ecolor": "0.2"}, zorder=2)
    _y_limits(ax, [m - s for m, s in zip(means, stds) if math.isfinite(s)] + means,
              [m + (s if math.isfinite(s) else 0) for m, s in zip(means, stds)])
    if "reward" in metrics:
        i = metrics.index("reward")
        _reference_segment(ax, reference, i - 0.42, i + 0.42)
    ax.set_xticks(positions, _tick_labels(metrics, reward_name))
    ax.set_ylabel("mean ± std over runs" if n_runs > 1 else "score (one run)")
    ax.grid(True, axis="y", zorder=0)
    full_title = f"{title} ({_runs_text(n_runs)})" if n_runs else title
    failures = failure_rate_text(results)
    if failures:
        full_title += f"\nfailed predictions (no valid output): {failures}"
    ax.set_title(full_title, fontsize=12)
    handles, names = ax.get_legend_handles_labels()
    if handles:  # under the bars: the figure stays as wide as the bars need
        fig.legend(handles, names, loc="outside lower center", frameon=False)
    _fit_value_labels(fig, ax, _bar_labels(ax, bars, means, stds))
    return fig


def plot_metrics_with_mean_and_std(results: dict, path, title: str = "Evaluation",
                                   reference: dict | None = None, reward_name: str | None = None) -> Path:
    """One bar per metric: mean over the runs, std as error bar, "0.63 ± 0.05" above it.

    `results` is `{"runs": [{"reward": .., "f1_score": .., "failures": ..}, ...], "mean": {...},
    "std": {...}, "rewards": [[...per example...], ...]}` (mean/std are computed from `runs` when
    absent); `failures` is no bar: the title gives it as a rate of the test examples.
    `reference` draws a labelled chance line over the reward's bar; `reward_name` names the reward.
    """
    return _save(_figure_metrics(results, title, reference, reward_name), path)


# ----------------------------------------------------------------------------- comparison bars


@_styled
def _figure_comparison(results_by_label: dict[str, dict], title: str = "Comparison", comparison: dict | None = None,
                       reference: dict | None = None, reward_name: str | None = None) -> Figure:
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
    show_ci = bool(comparison and comparison.get("examples") and comparison.get("ci95"))

    bars_width = max(4.5, 1.2 + len(metrics) * n_labels * (0.55 if n_labels > 3 else 1.0))
    fig = _new_figure(max(bars_width + (1.9 if show_ci else 0), 9.0), 5.4 + 0.35 * math.ceil(n_labels / 3))
    if show_ci:
        ax, cax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [bars_width, 1.3]})
    else:
        ax, cax = fig.add_subplot(), None
    positions = np.arange(len(metrics))
    all_bars, lows, highs, failed = [], [], [], []
    for i, label in enumerate(labels):
        mean, std, n_runs = summaries[label]
        means = [mean.get(m, math.nan) for m in metrics]
        stds = [std.get(m, math.nan) for m in metrics]
        offsets = positions - group_width / 2 + width * (i + 0.5)
        failures = failure_rate_text(results_by_label[label])
        legend = f"{label} ({_runs_text(n_runs)})" if n_runs else str(label)
        if failures:
            legend += f"\n  failed predictions: {failures}"
            if mean.get("failures", 0) > 0:
                failed.append(label)
        bars = ax.bar(offsets, [m if math.isfinite(m) else 0 for m in means], width=width * 0.92,
                      color=COLORS[i % len(COLORS)], label=legend,
                      yerr=_yerr(stds), capsize=4,
                      error_kw={"elinewidth": 1.3, "ecolor": "0.2"}, zorder=2)
        all_bars.append((bars, means, stds))
        lows += [m - s for m, s in zip(means, stds) if math.isfinite(m) and math.isfinite(s)] + means
        highs += [m + (s if math.isfinite(s) else 0) for m, s in zip(means, stds)]
    _y_limits(ax, lows, highs)
    if "reward" in metrics:
        i = metrics.index("reward")
        _reference_segment(ax, reference, i - group_width / 2, i + group_width / 2)
    ax.set_xticks(positions, _tick_labels(metrics, reward_name))
    ax.set_ylabel("mean ± std over runs")
    ax.grid(True, axis="y", zorder=0)
    fig.suptitle(title + (f"\nnote: {' and '.join(failed)} had failed predictions (scored 0), see legend"
                          if failed else ""), fontsize=13)
    # The legend goes under everything, so the paired-difference panel stands next to the bars.
    handles, names = ax.get_legend_handles_labels()
    columns = max(1, min(len(handles), int(fig.get_figwidth() // 3.6)))  # a column per ~3.6 in: it fits the width
    fig.legend(handles, names, loc="outside lower center", ncols=columns, frameon=False, fontsize=9.5)
    if cax is not None:
        _draw_paired_ci(cax, comparison)
    texts = [t for bars, means, stds in all_bars for t in _bar_labels(ax, bars, means, stds,
                                                                      fontsize=9 if n_labels > 3 else 9.5)]
    _fit_value_labels(fig, ax, texts)
    return fig


def _draw_paired_ci(ax, comparison: dict) -> None:
    """The paired trained − baseline reward difference with its 95% bootstrap CI, against 0."""
    difference = float(comparison["reward_difference"])
    low, high = (float(v) for v in comparison["ci95"])
    ax.axhline(0, color=REFERENCE_COLOR, linewidth=1.2, zorder=1)
    ax.errorbar([0], [difference], yerr=[[difference - low], [high - difference]], fmt="D", color="black",
                markersize=7, capsize=8, elinewidth=2, zorder=3)
    bottom, top = min(low, 0.0), max(high, 0.0)
    if top - bottom < 0.2:  # a tiny interval (or none) on a readable axis: ticks two decimals apart
        middle = (top + bottom) / 2
        bottom, top = middle - 0.1, middle + 0.1
    span = top - bottom
    ax.set_ylim(bottom - 0.15 * span, top + 0.15 * span)
    ax.set_xlim(-1, 1)
    ax.set_xticks([])
    ax.spines["bottom"].set_visible(False)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.2f}"))
    ax.grid(True, axis="y", zorder=0)
    ax.set_title("paired Δ reward", fontsize=11)
    ax.set_xlabel(f"trained − baseline\n{difference:+.3f}\n95% CI [{low:+.2f}, {high:+.2f}]\n"
                  f"{comparison['examples']} test examples", fontsize=9.5)


def plot_metrics_comparison_with_mean_and_std(results_by_label: dict[str, dict], path, title: str = "Comparison",
                                              comparison: dict | None = None, reference: dict | None = None,
                                              reward_name: str | None = None) -> Path:
    """Grouped bars: metrics on the x axis, one bar per label (e.g. baseline / trained).

    `results_by_label` maps a label to a results dict as taken by `plot_metrics_with_mean_and_std`;
    the legend gives each label's failed predictions as a rate of the test examples.
    `comparison` (comparison.json: `reward_difference`, `ci95`, `examples`) adds a panel with the
    paired difference and its 95% CI; `reference` a labelled chance line over the reward's bars.
    """
    return _save(_figure_comparison(results_by_label, title, comparison, reference, reward_name), path)


# ----------------------------------------------------------------------------- sweeps

SWEEP_LABELS = {
    "best_val_reward": "best val_reward\n(choose an arm by this)",
    "final_reward_mean": "test reward, mean ± std over runs\n(reported, not for choosing)",
}


def _sweep_layout(rows: list[dict], params: list[str] | None) -> tuple[list[str], list[dict]]:
    overrides = [_overrides(row) for row in rows]
    if params is None:
        names = list(dict.fromkeys(k for o in overrides for k in o))
        params = [p for p in names if len({repr(o.get(p)) for o in overrides}) > 1]
    return list(params), overrides


def _job_stopped(row: dict) -> str | None:
    """How a job ended short ("failed", "interrupted", "incomplete"); None when it ran as asked (a
    budget stop included: its results are whole)."""
    from promptrl.experiment.status import ENDED_AS_ASKED  # not at import: the experiment package imports plots

    status = row.get("status", "ok")
    return None if status in ENDED_AS_ASKED else status


def _job_ok(row: dict, value_key: str) -> bool:
    return _job_stopped(row) is None and _is_number(row.get(value_key))


def _sweep_panels(rows, value_key, test_key) -> list[str]:
    """The selection score first (when any job has it), the test score apart."""
    keys = [k for k in (value_key, test_key) if k and any(_job_ok(r, k) for r in rows)]
    return list(dict.fromkeys(keys)) or [value_key]


def _baseline_value(rows, baseline_key) -> tuple[float, bool]:
    """The untrained program's test reward, and whether every job had the same one."""
    values = [float(r[baseline_key]) for r in rows if baseline_key and _job_ok(r, baseline_key)]
    if not values:
        return math.nan, True
    same = max(values) - min(values) <= 1e-9
    return float(np.mean(values)), same


def _axis_label(key: str, std_key: str | None) -> str:
    if key in SWEEP_LABELS:
        return SWEEP_LABELS[key]
    return key.replace("_", " ") + (" (± std)" if std_key else "")


@_styled
def _figure_sweep(rows: list[dict], value_key: str = "best_val_reward", test_key: str | None = "final_reward_mean",
                  std_key: str | None = "final_reward_std", baseline_key: str | None = "baseline_reward_mean",
                  params: list[str] | None = None, title: str = "Sweep") -> Figure:
    rows = list(rows)
    if not rows:
        raise ValueError("plot_sweep: no sweep jobs to plot")
    params, overrides = _sweep_layout(rows, params)
    short = _short_names(params)
    panels = _sweep_panels(rows, value_key, test_key)
    chosen = _chosen_jobs(rows, value_key) if value_key in panels and len(panels) > 1 else set()
    baseline, same_baseline = _baseline_value(rows, baseline_key)
    if len(params) == 2:
        fig = _sweep_heatmaps(rows, overrides, params, panels, std_key, chosen)
    else:
        fig = _sweep_bars(rows, overrides, params, short, panels, std_key, chosen, baseline, same_baseline,
                          baseline_key)
    subtitle = []
    if chosen:
        subtitle.append("outlined: the job(s) with the best val_reward")
    if len(params) == 2 and math.isfinite(baseline):
        subtitle.append(f"untrained baseline test reward {_fmt(baseline)}" if same_baseline
                        else "untrained baseline test reward differs by job (sweep_report.md)")
    fig.suptitle(title + ("\n" + "; ".join(subtitle) if subtitle else ""), fontsize=12)
    return fig


def _chosen_jobs(rows, value_key) -> set[int]:
    values = [float(r[value_key]) if _job_ok(r, value_key) else -math.inf for r in rows]
    best = max(values)
    return {i for i, v in enumerate(values) if math.isfinite(best) and v == best}


def _sweep_heatmaps(rows, overrides, params, panels, std_key, chosen) -> Figure:
    p_row, p_col = params
    row_values = _sort_values(o.get(p_row) for o in overrides)
    col_values = _sort_values(o.get(p_col) for o in overrides)
    r_index = {repr(v): i for i, v in enumerate(row_values)}
    c_index = {repr(v): i for i, v in enumerate(col_values)}
    fig = _new_figure(max(5.0, 2.6 + 1.3 * len(col_values)) * len(panels), max(3.8, 2.0 + 0.8 * len(row_values)))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, key in zip(axes, panels):
        cells: dict[tuple[int, int], list[tuple[float, float]]] = {}
        failed: dict[tuple[int, int], str] = {}  # cell -> how its job ended short
        chosen_cells = set()
        for k, (row, o) in enumerate(zip(rows, overrides)):
            cell = (r_index[repr(o.get(p_row))], c_index[repr(o.get(p_col))])
            if _job_ok(row, key):
                std = _number(row.get(std_key)) if (std_key and key != "best_val_reward") else math.nan
                if _number(row.get("nb_runs")) == 1:
                    std = math.nan
                cells.setdefault(cell, []).append((float(row[key]), std))
                if k in chosen:
                    chosen_cells.add(cell)
            elif _job_stopped(row):
                failed[cell] = _job_stopped(row)
        grid = np.full((len(row_values), len(col_values)), np.nan)
        spread = np.full_like(grid, np.nan)
        for (i, j), values in cells.items():  # repeated jobs of a cell: their mean
            grid[i, j] = np.mean([v for v, _ in values])
            stds = [s for _, s in values if math.isfinite(s)]
            spread[i, j] = np.mean(stds) if stds else np.nan
        finite = grid[np.isfinite(grid)]
        unit = finite.size == 0 or _unit_range(finite.tolist())
        vmin, vmax = (0.0, 1.0) if unit else (float(finite.min()), float(finite.max()))
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
                    ax.text(j, i, failed[i, j], ha="center", va="center", color="firebrick", fontsize=10)
                if key == "best_val_reward" and (i, j) in chosen_cells:
                    ax.add_patch(Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, fill=False,
                                                              edgecolor="crimson", linewidth=3, zorder=4))
        ax.set_xticks(range(len(col_values)), [str(v) for v in col_values])
        ax.set_yticks(range(len(row_values)), [str(v) for v in row_values])
        ax.set_xlabel(p_col)
        ax.set_ylabel(p_row)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        ax.set_title(SWEEP_LABELS.get(key, key).split("\n")[0], fontsize=11)
        fig.colorbar(image, ax=ax, label=_axis_label(key, std_key if key != "best_val_reward" else None),
                     shrink=0.9)
    return fig


def _sweep_bars(rows, overrides, params, short, panels, std_key, chosen, baseline, same_baseline,
                baseline_key) -> Figure:
    def parts(o: dict) -> list[str]:
        shown = params or list(o)
        return [f"{short.get(p, p)}={o.get(p)}" for p in shown if p in o] or ["(defaults)"]

    labels = [", ".join(parts(o)) for o in overrides]
    # Tick labels: "k=1, k_best=5" when it fits under its bar, else one parameter per line,
    # else slanted. ~0.085 in per character at the 10 pt tick font.
    width = max(5.5, 2.6 + 0.9 * len(rows))
    slot = (width - 2.6) / len(rows)
    rotate = False
    if max(len(s) for s in labels) * 0.085 > slot:
        needed = max(len(p) for o in overrides for p in parts(o)) * 0.085 + 0.15
        if 2.6 + needed * len(rows) <= 16:  # widen the figure (up to 16 in) rather than slant
            width = max(width, 2.6 + needed * len(rows))
            labels = ["\n".join(parts(o)) for o in overrides]
        else:
            rotate = True
    fig = _new_figure(width + 2.4, 1.4 + 3.0 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    positions = np.arange(len(rows))
    job_stopped = [_job_stopped(row) for row in rows]
    for n, (ax, key) in enumerate(zip(axes, panels)):
        ok = [_job_ok(row, key) for row in rows]
        values = [float(row[key]) if good else math.nan for row, good in zip(rows, ok)]
        has_std = std_key and key != "best_val_reward"
        stds = [_number(row.get(std_key)) if (good and has_std and _number(row.get("nb_runs")) != 1) else math.nan
                for row, good in zip(rows, ok)]
        _y_limits(ax, [v - s for v, s in zip(values, stds) if math.isfinite(s)] + values,
                  [v + (s if math.isfinite(s) else 0) for v, s in zip(values, stds)])
        marker_height = 0.04 * (ax.get_ylim()[1] - ax.get_ylim()[0])
        heights = [v if good else marker_height for v, good in zip(values, ok)]
        test = key != "best_val_reward"
        color = COLORS[1] if test and len(panels) > 1 else COLORS[0]
        bars = ax.bar(positions, heights, width=0.65, zorder=2,
                      color=[color if good else "none" for good in ok],
                      edgecolor=["crimson" if (i in chosen and key == "best_val_reward") else
                                 (color if good else "firebrick" if stopped else "none")
                                 for i, (good, stopped) in enumerate(zip(ok, job_stopped))],
                      linewidth=[3 if (i in chosen and key == "best_val_reward") else 1 for i in range(len(rows))],
                      yerr=_yerr(stds), capsize=5,
                      error_kw={"elinewidth": 1.4, "ecolor": "0.2"})
        for bar, good, stopped in zip(bars, ok, job_stopped):
            if good:
                continue
            if stopped:  # a hatched red stub; a job that ran fine but has no such value (untrained: no
                bar.set_hatch("///")  # validation score) gets a grey note, not a failure's look
            ax.text(bar.get_x() + bar.get_width() / 2, marker_height * 1.3 if stopped else 0,
                    stopped or ("not trained" if key == "best_val_reward" else "no value"),
                    ha="center", va="bottom", color="firebrick" if stopped else REFERENCE_COLOR,
                    fontsize=9.5, fontstyle="normal" if stopped else "italic")
        if test and baseline_key:
            base = [_number(r.get(baseline_key)) if _job_ok(r, baseline_key) else math.nan for r in rows]
            if same_baseline and math.isfinite(baseline):
                ax.axhline(baseline, color=REFERENCE_COLOR, linestyle=(0, (2, 2)), linewidth=1.6, zorder=3,
                           label=f"untrained baseline ({_fmt(baseline)})")
            elif any(math.isfinite(b) for b in base):
                ax.scatter(positions, base, marker="_", s=900, color=REFERENCE_COLOR, linewidths=2.5, zorder=3,
                           label="untrained baseline of the job")
        handles, names = ax.get_legend_handles_labels()
        if key == "best_val_reward" and chosen:
            handles.append(Patch(facecolor=color, edgecolor="crimson", linewidth=3))
            names.append("best val_reward")
        if handles:
            ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9.5)
        ax.set_ylabel(_axis_label(key, std_key if has_std else None), fontsize=10)
        ax.grid(True, axis="y", zorder=0)
        _fit_value_labels(fig, ax, _bar_labels(ax, [b for b, good in zip(bars, ok) if good],
                                               [v for v, g in zip(values, ok) if g],
                                               [s for s, g in zip(stds, ok) if g]))
    axes[-1].set_xticks(positions, labels, rotation=35 if rotate else 0, ha="right" if rotate else "center",
                        rotation_mode="anchor")
    return fig


def plot_sweep(rows: list[dict], path, value_key: str = "best_val_reward", test_key: str | None = "final_reward_mean",
               std_key: str | None = "final_reward_std", baseline_key: str | None = "baseline_reward_mean",
               params: list[str] | None = None, title: str = "Sweep") -> Path:
    """One sweep's result, laid out by the score an arm is chosen by: a heatmap per score when two
    parameters vary (a grid), stacked bars otherwise.

    `rows` are the sweep's jobs, `{"overrides": {"optimizer.k": 1, ...}, "best_val_reward": ..,
    "final_reward_mean": .., "final_reward_std": .., "baseline_reward_mean": .., "status": "ok"}`
    (overrides may also be Hydra's `["key=value"]` list). The first panel is `value_key` (the
    best validation reward, the job with the highest outlined), the second `test_key` (the test
    reward, labelled as not for choosing) with the untrained baseline as a reference line.
    `params` are the parameters to lay out (default: those that vary across jobs). Cells with no
    successful job stay blank (labelled "failed", "interrupted" or "incomplete" when a job ended so
    there); such jobs in the bar chart are a short hatched red bar with that label, a job that ran
    as asked (a budget stop included) without the value (no optimizer: no validation score) a grey
    "not trained".
    """
    return _save(_figure_sweep(rows, value_key, test_key, std_key, baseline_key, params, title), path)

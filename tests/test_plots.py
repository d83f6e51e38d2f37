"""The PNG plots: files are real PNGs, and the figures show what a reader relies on."""

import math

import numpy as np
import pytest
from matplotlib.container import BarContainer

from promptrl import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HISTORY = [
    {"epoch": 1, "reward": 0.40, "val_reward": 0.50, "f1_score": 0.30, "val_f1_score": 0.35, "failures": 2,
     "val_failures": 1},
    {"epoch": 2, "reward": 0.55, "val_reward": 0.70, "f1_score": 0.45, "val_f1_score": 0.50, "failures": 1,
     "val_failures": 0},
    {"epoch": 3, "reward": 0.65, "val_reward": 0.60, "f1_score": 0.50, "val_f1_score": 0.55, "failures": 0,
     "val_failures": 0},
]

RESULTS = {
    "runs": [{"reward": 0.60, "f1_score": 0.50, "failures": 1}, {"reward": 0.65, "f1_score": 0.55, "failures": 0},
             {"reward": 0.64, "f1_score": 0.45, "failures": 2}],
    "mean": {"reward": 0.63, "f1_score": 0.50, "failures": 1.0},
    "std": {"reward": 0.05, "f1_score": 0.05, "failures": 1.0},
}


def assert_png(path):
    assert path.exists()
    assert path.read_bytes()[:8] == PNG_MAGIC


def bars_of(ax):
    return [bar for container in ax.containers if isinstance(container, BarContainer) for bar in container]


def texts_of(ax):
    return [t.get_text() for t in ax.texts]


# ----------------------------------------------------------------------------- plot_history


def test_plot_history_writes_png_into_new_dirs(tmp_path):
    path = plots.plot_history(HISTORY, tmp_path / "a" / "b" / "history.png")
    assert path == tmp_path / "a" / "b" / "history.png"
    assert_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["history.png"]  # no temp file left behind


def test_plot_history_draws_train_solid_and_val_dashed_per_metric_without_failures():
    fig = plots._figure_history(HISTORY)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["reward", "val_reward", "f1_score", "val_f1_score"]
    for metric in ("reward", "f1_score"):
        assert lines[metric].get_linestyle() == "-"
        assert lines[f"val_{metric}"].get_linestyle() == "--"
        assert lines[metric].get_color() == lines[f"val_{metric}"].get_color()
    assert lines["reward"].get_color() != lines["f1_score"].get_color()
    assert list(lines["reward"].get_xdata()) == [1, 2, 3]  # epochs shown 1-based
    assert list(lines["val_reward"].get_ydata()) == [0.50, 0.70, 0.60]
    assert ax.get_ylim() == pytest.approx((0, 1.05))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "best val_reward (epoch 2)" in legend
    assert ax.get_title() == "Training history"


def test_plot_history_single_epoch_is_visible(tmp_path):
    fig = plots._figure_history(HISTORY[:1])
    ax = fig.axes[0]
    line = next(line for line in ax.get_lines() if line.get_label() == "reward")
    assert line.get_marker() not in (None, "", "None")
    low, high = ax.get_xlim()
    assert low < 1 < high
    assert_png(plots.plot_history(HISTORY[:1], tmp_path / "one.png"))


def test_plot_history_without_validation_plots_train_metrics():
    records = [{"epoch": e, "reward": 0.1 * e, "failures": 0} for e in range(3)]
    lines = [line.get_label() for line in plots._figure_history(records).axes[0].get_lines()]
    assert lines == ["reward"]


def test_plot_history_puts_a_metric_on_another_scale_in_its_own_panel():
    records = [{**r, "length": 10.0 * r["epoch"], "val_length": 5.0 * r["epoch"]} for r in HISTORY]
    fig = plots._figure_history(records)
    assert len(fig.axes) == 2
    scores, lengths = fig.axes
    assert [line.get_label() for line in scores.get_lines()] == ["reward", "val_reward", "f1_score", "val_f1_score"]
    assert scores.get_ylim() == pytest.approx((0, 1.05))
    assert [line.get_label() for line in lengths.get_lines()] == ["length", "val_length"]
    assert lengths.get_ylim()[1] >= 20


def test_plot_history_rejects_empty_records(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        plots.plot_history([], tmp_path / "h.png")


# ----------------------------------------------------------------------------- plot_metrics_with_mean_and_std


def test_plot_metrics_one_bar_per_metric_with_mean_std_labels(tmp_path):
    assert_png(plots.plot_metrics_with_mean_and_std(RESULTS, tmp_path / "final.png"))
    fig = plots._figure_metrics(RESULTS, title="Final")
    ax = fig.axes[0]
    bars = bars_of(ax)
    assert [b.get_height() for b in bars] == pytest.approx([0.63, 0.50])  # failures is no bar
    assert [t.get_text() for t in ax.get_xticklabels()] == ["reward", "f1_score"]
    assert "0.63 ± 0.05" in texts_of(ax)
    assert "n=3 runs" in ax.get_title()
    bottom, top = ax.get_ylim()
    assert bottom == 0 and top >= 1.05
    assert all(t.get_position()[1] < top for t in ax.texts)  # labels inside the axes


def test_plot_metrics_computes_mean_and_std_from_runs_and_fits_values_above_one():
    results = {"runs": [{"reward": 1.0, "length": 3.0}, {"reward": 1.0, "length": 5.0}]}
    ax = plots._figure_metrics(results).axes[0]
    assert [b.get_height() for b in bars_of(ax)] == pytest.approx([1.0, 4.0])
    assert "4.00 ± 1.41" in texts_of(ax)  # sample std of 3 and 5
    assert ax.get_ylim()[1] > 4.0 + 1.41


# ----------------------------------------------------------------------------- comparison


def test_plot_comparison_groups_one_bar_per_label_per_metric(tmp_path):
    trained = {"runs": RESULTS["runs"], "mean": {"reward": 0.80, "f1_score": 0.70}, "std": {"reward": 0.02,
                                                                                           "f1_score": 0.04}}
    by_label = {"baseline": RESULTS, "trained": trained}
    assert_png(plots.plot_metrics_comparison_with_mean_and_std(by_label, tmp_path / "cmp.png"))
    ax = plots._figure_comparison(by_label).axes[0]
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [c.get_label() for c in containers] == ["baseline (n=3)", "trained (n=3)"]
    assert [b.get_height() for b in containers[1]] == pytest.approx([0.80, 0.70])
    # within each metric's group the baseline bar is left of the trained bar, groups do not overlap
    base_x = [b.get_x() for b in containers[0]]
    trained_x = [b.get_x() for b in containers[1]]
    assert base_x[0] < trained_x[0] < base_x[1] < trained_x[1]
    assert containers[0][0].get_facecolor() != containers[1][0].get_facecolor()
    assert {"0.63 ± 0.05", "0.80 ± 0.02"} <= set(texts_of(ax))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["baseline (n=3)", "trained (n=3)"]


def test_plot_comparison_metric_missing_for_one_label_is_no_bar_label():
    by_label = {"a": {"mean": {"reward": 0.5}, "std": {"reward": 0.1}, "runs": [{}, {}]},
                "b": {"mean": {"reward": 0.6, "f1_score": 0.4}, "std": {"reward": 0.1, "f1_score": 0.1}, "runs": [{}]}}
    ax = plots._figure_comparison(by_label).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["reward", "f1_score"]
    assert sorted(texts_of(ax)) == ["0.40 ± 0.10", "0.50 ± 0.10", "0.60 ± 0.10"]


# ----------------------------------------------------------------------------- sweep

GRID = [
    {"overrides": {"optimizer.k": 1, "optimizer.k_best": 5}, "final_reward_mean": 0.7, "final_reward_std": 0.1,
     "status": "ok"},
    {"overrides": {"optimizer.k": 1, "optimizer.k_best": 10}, "final_reward_mean": 0.8, "final_reward_std": 0.05,
     "status": "ok"},
    {"overrides": {"optimizer.k": 3, "optimizer.k_best": 5}, "final_reward_mean": 0.9, "final_reward_std": 0.0,
     "status": "ok"},
    {"overrides": {"optimizer.k": 3, "optimizer.k_best": 10}, "final_reward_mean": None, "status": "failed"},
]


def test_plot_sweep_two_varying_params_is_a_heatmap_with_blank_failed_cell(tmp_path):
    assert_png(plots.plot_sweep(GRID, tmp_path / "sweep.png"))
    fig = plots._figure_sweep(GRID)
    ax = fig.axes[0]
    assert len(ax.images) == 1 and not bars_of(ax)
    grid = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
    assert grid.shape == (2, 2)
    assert grid[0, 0] == pytest.approx(0.7) and grid[0, 1] == pytest.approx(0.8) and grid[1, 0] == pytest.approx(0.9)
    assert math.isnan(grid[1, 1])
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("optimizer.k", "optimizer.k_best")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "10"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "3"]
    assert "failed" in texts_of(ax)
    assert any(t.startswith("0.70") for t in texts_of(ax))


def test_plot_sweep_one_varying_param_is_bars_with_failed_job_hatched(tmp_path):
    rows = [
        {"overrides": {"optimizer.k": k, "optimizer.k_best": 5}, "final_reward_mean": 0.2 * k,
         "final_reward_std": 0.05, "status": "ok"} for k in (1, 3)
    ] + [{"overrides": {"optimizer.k": 5, "optimizer.k_best": 5}, "status": "failed"}]
    assert_png(plots.plot_sweep(rows, tmp_path / "sweep.png"))
    ax = plots._figure_sweep(rows).axes[0]
    assert not ax.images
    bars = bars_of(ax)
    assert len(bars) == 3
    assert [t.get_text() for t in ax.get_xticklabels()] == ["k=1", "k=3", "k=5"]
    assert [b.get_height() for b in bars[:2]] == pytest.approx([0.2, 0.6])
    assert bars[2].get_hatch() and not bars[0].get_hatch()
    assert "failed" in texts_of(ax)


def test_plot_sweep_accepts_hydra_override_lists_and_numeric_order():
    rows = [{"overrides": ["+optimizer=random_fewshot", f"optimizer.k={k}"], "final_reward_mean": k / 10,
             "status": "ok"} for k in (10, 2, 5)]
    ax = plots._figure_sweep(rows, std_key=None).axes[0]
    # one varying parameter -> bars in job order, labelled with the short name
    assert [t.get_text() for t in ax.get_xticklabels()] == ["k=10", "k=2", "k=5"]
    grid_rows = [{"overrides": [f"a.x={x}", f"b.x={y}"], "final_reward_mean": 0.5, "status": "ok"}
                 for x in (10, 2) for y in ("lo", "hi")]
    ax = plots._figure_sweep(grid_rows).axes[0]
    assert len(ax.images) == 1
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "10"]  # numbers sorted as numbers
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("a.x", "b.x")


def test_plot_sweep_three_params_falls_back_to_bars_with_full_labels():
    rows = [{"overrides": {"optimizer.k": k, "optimizer.k_best": b, "seed": s}, "final_reward_mean": 0.5,
             "status": "ok"} for k, b, s in [(1, 5, 0), (3, 10, 1)]]
    ax = plots._figure_sweep(rows).axes[0]
    assert len(bars_of(ax)) == 2
    assert ax.get_xticklabels()[0].get_text().replace("\n", ", ") == "k=1, k_best=5, seed=0"


def test_many_plots_leave_no_open_pyplot_figures(tmp_path):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    for i in range(5):
        plots.plot_history(HISTORY, tmp_path / f"h{i}.png")
        plots.plot_sweep(GRID, tmp_path / f"s{i}.png")
    assert len(plt.get_fignums()) == before


def test_plot_metrics_single_run_shows_no_made_up_spread():
    ax = plots._figure_metrics({"runs": [{"reward": 0.5, "failures": 0}]}).axes[0]
    assert texts_of(ax) == ["0.50"]
    assert "n=1 run)" in ax.get_title()

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
    # the reward has its own panel, the metrics the next one
    assert [line.get_label() for line in ax.get_lines()] == ["reward", "val_reward"]
    lines = {line.get_label(): line for a in fig.axes for line in a.get_lines()}
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
    assert len(fig.axes) == 3
    reward, scores, lengths = fig.axes
    assert [line.get_label() for line in reward.get_lines()] == ["reward", "val_reward"]
    assert [line.get_label() for line in scores.get_lines()] == ["f1_score", "val_f1_score"]
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
    assert "(3 runs)" in ax.get_title()
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
    assert [c.get_label().split("\n")[0] for c in containers] == ["baseline (3 runs)", "trained (3 runs)"]
    assert [b.get_height() for b in containers[1]] == pytest.approx([0.80, 0.70])
    # within each metric's group the baseline bar is left of the trained bar, groups do not overlap
    base_x = [b.get_x() for b in containers[0]]
    trained_x = [b.get_x() for b in containers[1]]
    assert base_x[0] < trained_x[0] < base_x[1] < trained_x[1]
    assert containers[0][0].get_facecolor() != containers[1][0].get_facecolor()
    assert {"0.63 ± 0.05", "0.80 ± 0.02"} <= set(texts_of(ax))
    legend = [t.get_text().split("\n")[0] for t in ax.figure.legends[0].get_texts()]
    assert legend == ["baseline (3 runs)", "trained (3 runs)"]


def test_plot_comparison_metric_missing_for_one_label_is_no_bar_label():
    by_label = {"a": {"mean": {"reward": 0.5}, "std": {"reward": 0.1}, "runs": [{}, {}]},
                "b": {"mean": {"reward": 0.6, "f1_score": 0.4}, "std": {"reward": 0.1, "f1_score": 0.1}, "runs": [{}]}}
    ax = plots._figure_comparison(by_label).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["reward", "f1_score"]
    assert sorted(texts_of(ax)) == ["0.40", "0.50 ± 0.10", "0.60"]  # b ran once: no spread shown


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


def test_plot_sweep_untrained_job_is_a_grey_note_not_a_failure():
    rows = [{"overrides": {"optimizer": "none"}, "best_val_reward": None, "final_reward_mean": 0.7, "status": "ok"},
            {"overrides": {"optimizer": "mipro"}, "best_val_reward": 0.9, "final_reward_mean": 0.8, "status": "ok"},
            {"overrides": {"optimizer": "gepa"}, "status": "failed"}]
    ax = plots._figure_sweep(rows).axes[0]  # best val_reward: the untrained job has none
    bars = bars_of(ax)
    assert not bars[0].get_hatch() and bars[2].get_hatch()
    texts = texts_of(ax)
    assert "not trained" in texts and "failed" in texts
    assert "no value" not in texts


def test_plot_sweep_labels_how_a_job_ended_and_plots_a_budget_stop_as_a_result():
    rows = [{"overrides": {"optimizer": "mipro"}, "best_val_reward": 0.9, "final_reward_mean": 0.8,
             "status": "budget_reached"},  # ended as asked: its numbers are whole
            {"overrides": {"optimizer": "gepa"}, "status": "interrupted"}]
    ax = plots._figure_sweep(rows).axes[0]
    bars = bars_of(ax)
    assert bars[0].get_height() == pytest.approx(0.9) and not bars[0].get_hatch()
    assert bars[1].get_hatch() and "interrupted" in texts_of(ax) and "failed" not in texts_of(ax)
    grid = [{"overrides": {"a": a, "b": b}, "final_reward_mean": 0.5, "status": status}
            for a, b, status in ((1, 1, "ok"), (1, 2, "budget_reached"), (2, 1, "incomplete"), (2, 2, "failed"))]
    texts = texts_of(plots._figure_sweep(grid).axes[0])
    assert {"incomplete", "failed"} <= set(texts) and texts.count("0.50") == 2


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
    assert "(1 run)" in ax.get_title()


# ----------------------------------------------------------------------------- what a reviewer must be able to read
# (issue #13: every plot for 1, 2 and 12 bars, 1 and 5 epochs, reward = metric and reward != metric;
# the data behind each plot, and no two texts overlapping)


def visible_texts(fig):
    """Every text a reader sees: titles, axis labels, tick labels, value labels, legends."""
    fig.canvas.draw()
    texts = [fig._suptitle] if fig._suptitle is not None else []
    for legend in fig.legends:
        texts += legend.get_texts()
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        low, high = sorted(ax.get_xlim())
        texts += [t for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if low - 1e-9 <= x <= high + 1e-9]
        low, high = sorted(ax.get_ylim())
        texts += [t for t, y in zip(ax.get_yticklabels(), ax.get_yticks()) if low - 1e-9 <= y <= high + 1e-9]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def assert_no_overlapping_text(fig):
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in visible_texts(fig)]
    clashes = [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:]
               if plots.boxes_overlap(box_a, box_b)]
    assert not clashes, clashes


def assert_texts_inside_figure(fig):
    width, height = fig.canvas.get_width_height()
    renderer = fig.canvas.get_renderer()
    for text in visible_texts(fig):
        box = text.get_window_extent(renderer)
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, text.get_text()


def results(reward_values, f1_values=None, failures=None, examples=12):
    runs = []
    for i, reward in enumerate(reward_values):
        run = {"reward": reward, "f1_score": reward if f1_values is None else f1_values[i]}
        run["failures"] = 0 if failures is None else failures[i]
        runs.append(run)
    keys = list(runs[0])
    mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    std = {k: float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0 for k in keys}
    return {"nb_runs": len(runs), "runs": runs, "mean": mean, "std": std, "rewards": [[0.0] * examples] * len(runs)}


def history(epochs, same):
    records = [{"epoch": 0, "val_reward": 0.3, "val_f1_score": 0.3 if same else 0.45, "val_failures": 0}]
    for e in range(1, epochs + 1):
        reward, val = 0.3 + 0.1 * e, 0.35 + 0.1 * e
        records.append({"epoch": e, "reward": reward, "val_reward": val, "f1_score": reward if same else reward + 0.1,
                        "val_f1_score": val if same else val + 0.05, "failures": 0, "val_failures": 0})
    return records


REFERENCE = {"value": 0.5, "label": "majority class 'positive' (0.50)"}
PAIRED = {"reward_difference": 0.83, "ci95": [0.58, 1.0], "examples": 12}


def reward_axes(fig):
    return next(ax for ax in fig.axes if "val_reward" in [line.get_label() for line in ax.get_lines()])


@pytest.mark.parametrize("epochs", [1, 5])
@pytest.mark.parametrize("same", [True, False], ids=["reward=metric", "reward!=metric"])
def test_history_reward_is_never_hidden_and_text_never_overlaps(epochs, same, tmp_path):
    records = history(epochs, same)
    fig = plots._figure_history(records, reward_name="exact_match", reference=REFERENCE)
    reward_ax = reward_axes(fig)
    lines = {line.get_label(): line for line in reward_ax.get_lines()}
    # no metric line in the reward's panel: a metric equal to the reward cannot be drawn over it
    assert set(lines) == {"reward", "val_reward", REFERENCE["label"]}
    xs, ys = lines["reward"].get_xdata(), lines["reward"].get_ydata()
    assert list(xs[np.isfinite(ys)]) == list(range(1, epochs + 1))  # epoch 0 (untrained) has no train reward
    assert list(ys[1:]) == pytest.approx([r["reward"] for r in records[1:]])
    assert list(lines["val_reward"].get_ydata()) == pytest.approx([r["val_reward"] for r in records])
    assert list(lines[REFERENCE["label"]].get_ydata()) == pytest.approx([0.5, 0.5])
    assert "exact_match" in reward_ax.get_ylabel()
    metric_labels = [line.get_label() for ax in fig.axes if ax is not reward_ax for line in ax.get_lines()]
    assert metric_labels[0].startswith("f1_score")
    assert ("(= reward at every epoch)" in metric_labels[0]) == same
    if epochs == 1:  # the lone train point is big and carries its value
        assert lines["reward"].get_markersize() > 5 and "0.40" in [t.get_text() for t in reward_ax.texts]
    assert_no_overlapping_text(fig)
    assert_texts_inside_figure(fig)
    assert_png(plots.plot_history(records, tmp_path / "history.png", reference=REFERENCE))


def test_history_of_the_python_api_counts_trained_epochs_from_one():
    class FakeHistory:  # what fit returns: records() counts epochs from 0 like Keras' index
        def records(self):
            return [{"epoch": 0, "reward": 0.4, "val_reward": 0.5}, {"epoch": 1, "reward": 0.6, "val_reward": 0.7}]

    for given in (FakeHistory(), FakeHistory().records()):
        fig = plots._figure_history(given)
        line = next(line for line in fig.axes[0].get_lines() if line.get_label() == "reward")
        assert list(line.get_xdata()) == [1, 2]
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert "best val_reward (epoch 2)" in legend
    # history.jsonl's epoch 0 (the untrained validation, no train keys) stays epoch 0
    assert [r["epoch"] for r in plots.history_records(history(1, True))] == [0, 1]


def ci_errorbar(fig):
    cax = next(ax for ax in fig.axes if ax.get_title() == "paired Δ reward")
    container = cax.containers[0]
    point = container.lines[0]
    (segment,) = container.lines[2][0].get_segments()
    return point.get_ydata()[0], sorted(y for _, y in segment)


@pytest.mark.parametrize("n_labels", [1, 2, 12])
@pytest.mark.parametrize("values", ["zeros", "mixed"])
def test_comparison_bars_data_ci_chance_failures_and_no_overlap(n_labels, values, tmp_path):
    def value(i):
        return 0.0 if values == "zeros" else round(0.07 * i, 2)

    by_label = {f"arm{i}": results([value(i), value(i)], failures=[11, 10] if i == 0 else [0, 0])
                for i in range(n_labels)}
    comparison = PAIRED if n_labels == 2 else None
    fig = plots._figure_comparison(by_label, "Baseline vs trained", comparison, REFERENCE, "exact_match")
    ax = fig.axes[0]
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(containers) == n_labels
    for i, container in enumerate(containers):
        assert [b.get_height() for b in container] == pytest.approx([value(i), value(i)])
    # the failed predictions of each arm, as a rate with its denominator, in the legend
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "arm0 (2 runs)\n  failed predictions: 10.5 of 12 per run (88%)" in legend
    assert "note: arm0 had failed predictions" in fig._suptitle.get_text()
    # the chance line spans the reward's bars only, at the chance value
    (reference,) = [c for c in ax.collections if c.get_label() == REFERENCE["label"]]
    (segment,) = reference.get_segments()
    assert [y for _, y in segment] == pytest.approx([0.5, 0.5]) and segment[1][0] < 0.5
    assert REFERENCE["label"] in legend
    assert ax.get_xticklabels()[0].get_text() == "reward\n(exact_match)"
    if comparison:
        difference, (low, high) = ci_errorbar(fig)
        assert difference == pytest.approx(0.83) and (low, high) == pytest.approx((0.58, 1.0))
    else:
        assert len(fig.axes) == 1
    assert ax.get_ylim()[1] < 1.6  # room for the labels, not a y axis to 2
    assert_no_overlapping_text(fig)
    assert_texts_inside_figure(fig)
    assert_png(plots.plot_metrics_comparison_with_mean_and_std(by_label, tmp_path / "c.png", comparison=comparison))


def test_a_zero_paired_interval_keeps_distinct_tick_labels():
    by_label = {"baseline": results([0.0, 0.0]), "trained": results([0.0, 0.0])}
    zero = {"reward_difference": 0.0, "ci95": [0.0, 0.0], "examples": 30}
    fig = plots._figure_comparison(by_label, "t", zero, None, "exact_match")
    fig.canvas.draw()
    cax = next(ax for ax in fig.axes if ax.get_title() == "paired Δ reward")
    low, high = cax.get_ylim()
    labels = [t.get_text() for t in cax.get_yticklabels() if low <= t.get_position()[1] <= high]
    assert len(labels) >= 3 and len(set(labels)) == len(labels)  # not "+0.01 +0.01 +0.01"


@pytest.mark.parametrize("n_metrics", [1, 2, 12])
@pytest.mark.parametrize("nb_runs", [1, 3])
def test_evaluation_bars_data_failures_single_run_and_no_overlap(n_metrics, nb_runs):
    runs = [{"reward": 0.0, **{f"m{j}": 0.0 for j in range(1, n_metrics)}, "failures": 3} for _ in range(nb_runs)]
    result = {"nb_runs": nb_runs, "runs": runs, "rewards": [[0.0] * 12] * nb_runs,
              "mean": {k: 0.0 for k in runs[0]} | {"failures": 3.0}, "std": {k: 0.0 for k in runs[0]}}
    fig = plots._figure_metrics(result, "Baseline", REFERENCE, "exact_match")
    ax = fig.axes[0]
    assert [b.get_height() for b in bars_of(ax)] == [0.0] * n_metrics
    assert "failed predictions (no valid output): 3 of 12 per run (25%)" in ax.get_title()
    labels = texts_of(ax)
    if nb_runs == 1:  # one run: no "± 0.00" and no error bar
        assert labels == ["0.00"] * n_metrics
        assert all(c.errorbar is None for c in ax.containers if isinstance(c, BarContainer))
    else:
        assert labels == ["0.00 ± 0.00"] * n_metrics
    assert_no_overlapping_text(fig)
    assert_texts_inside_figure(fig)


def sweep_rows(n, two_params=False):
    rows = []
    for i in range(n):
        overrides = {"optimizer.k": i % 3 + 1, "optimizer.k_best": 5 * (i // 3 + 1)} if two_params \
            else {"optimizer.k": i + 1}
        rows.append({"overrides": overrides, "status": "ok", "nb_runs": 3, "best_val_reward": 0.5 + 0.03 * i,
                     "final_reward_mean": 0.9 - 0.03 * i, "final_reward_std": 0.05, "baseline_reward_mean": 0.4})
    return rows


@pytest.mark.parametrize("n_jobs", [1, 2, 12])
def test_sweep_bars_put_val_reward_first_test_apart_with_the_baseline(n_jobs, tmp_path):
    rows = sweep_rows(n_jobs)
    fig = plots._figure_sweep(rows, title="sentiment sweep")
    val_ax, test_ax = fig.axes
    assert [b.get_height() for b in bars_of(val_ax)] == pytest.approx([r["best_val_reward"] for r in rows])
    assert [b.get_height() for b in bars_of(test_ax)] == pytest.approx([r["final_reward_mean"] for r in rows])
    assert val_ax.get_ylabel().startswith("best val_reward") and "choose" in val_ax.get_ylabel()
    assert test_ax.get_ylabel().startswith("test reward") and "not for choosing" in test_ax.get_ylabel()
    (baseline,) = [line for line in test_ax.get_lines() if line.get_label().startswith("untrained baseline")]
    assert list(baseline.get_ydata()) == pytest.approx([0.4, 0.4])
    chosen = [b for b in bars_of(val_ax) if b.get_linewidth() == 3]
    assert len(chosen) == 1 and chosen[0].get_height() == pytest.approx(max(r["best_val_reward"] for r in rows))
    assert val_ax.get_ylim()[1] < 1.15 and test_ax.get_ylim()[1] < 1.15
    assert_no_overlapping_text(fig)
    assert_texts_inside_figure(fig)
    assert_png(plots.plot_sweep(rows, tmp_path / "sweep.png"))


def test_sweep_heatmaps_val_first_and_test_apart():
    rows = sweep_rows(6, two_params=True)
    fig = plots._figure_sweep(rows)
    val_ax, test_ax = fig.axes[:2]  # then their colorbars
    val = np.ma.filled(val_ax.images[0].get_array().astype(float), np.nan)
    test = np.ma.filled(test_ax.images[0].get_array().astype(float), np.nan)
    assert val[0, 0] == pytest.approx(0.5) and val[2, 1] == pytest.approx(0.65)
    assert test[0, 0] == pytest.approx(0.9)
    assert val_ax.get_title() == "best val_reward" and test_ax.get_title().startswith("test reward")
    assert "untrained baseline test reward 0.40" in fig._suptitle.get_text()
    assert [p for p in val_ax.patches if p.get_edgecolor()[:3] != (0, 0, 0)]  # the chosen cell is outlined
    assert_no_overlapping_text(fig)

"""The sweep report: one row per job of a Hydra multirun, a table (CSV + markdown) and a plot.

Written by a Hydra callback when the sweep ends (conf/hydra/default.yaml) and on demand with
`promptrl report SWEEP_DIR`. It reads only the files each job dir already holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from promptrl import plots
from promptrl.errors import UserError
from promptrl.experiment.status import ENDED_AS_ASKED, read_status
from promptrl.io import atomic_write_text
from promptrl.overrides import parse_overrides
from promptrl.report_html import write_html
from promptrl.secrets import collect_from_overrides, scrub_config

REPORT_CSV, REPORT_MD, REPORT_PNG = "sweep_report.csv", "sweep_report.md", "sweep_report.png"


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


PLANNED = "planned"  # a --dry-run job: its plan.json, no result, not a failure
NOT_FAILED = (*ENDED_AS_ASKED, PLANNED)


def job_row(job: Path) -> dict:
    """Everything the report says about one job, from its files (its numbers: `run_summary`, as MLflow logs them)."""
    from promptrl.experiment.results import run_summary

    overrides_file = job / "overrides.yaml"
    overrides = parse_overrides(yaml.safe_load(overrides_file.read_text()) or []) if overrides_file.is_file() else {}
    baseline, final = _read_json(job / "baseline.json"), _read_json(job / "final.json")
    evaluation = _read_json(job / "evaluation.json")  # a `promptrl evaluate -m` job
    usage = _read_json(job / "usage.json") or {}
    failed = job / "FAILED"
    run_status = read_status(job) or {}
    if failed.is_file():
        status, error = "failed", failed.read_text().strip().splitlines()[0]
    elif run_status.get("status") not in (None, "ok"):
        status, error = run_status["status"], run_status.get("reason", "")
    elif baseline is None and evaluation is None and (plan := _read_json(job / "plan.json")) is not None:
        status, error = PLANNED, f"dry run: {plan['calls']['total']} calls, ~${plan['cost']:.4f} (plan.json)"
    elif baseline is None and evaluation is None:
        status, error = "incomplete", "no baseline.json (stopped or still running)"
    else:
        status, error = "ok", ""
    history = [json.loads(line) for line in (job / "history.jsonl").read_text().splitlines() if line.strip()] \
        if (job / "history.jsonl").is_file() else []
    any_result = final or baseline or evaluation or {}
    row = {"job": int(job.name), "overrides": overrides, "status": status, "error": error,
           "trained": final is not None, "nb_runs": any_result.get("nb_runs"),
           "test_examples": len(any_result["rewards"][0]) if any_result.get("rewards") else None}
    row.update(run_summary({"baseline": baseline, "final": final, "evaluation": evaluation}, status=status,
                           comparison=_read_json(job / "comparison.json"), usage=usage, history=history))
    return row


def _metrics(rows: list[dict]) -> list[str]:
    names = []
    for row in rows:
        for key in row:
            if key.startswith("final_") and key.endswith("_mean") and key[6:-5] not in names:
                names.append(key[6:-5])
    return sorted(names, key=lambda n: (n != "reward", n in ("failures", "infra_failures"), n))


def _sweep_name(sweep_dir: Path) -> str:
    """`<task> sweep <timestamp>` for outputs/<task>/multiruns/<timestamp>, else the folder name."""
    if sweep_dir.parent.name == "multiruns":
        return f"{sweep_dir.parent.parent.name} sweep {sweep_dir.name}"
    return sweep_dir.name


def write_report(sweep_dir) -> list[dict]:
    """Write sweep_report.csv / .md / .png in `sweep_dir`; return the rows."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"sweep dir not found: {sweep_dir}; pass outputs/<task>/multiruns/<timestamp>")
    rows = [job_row(job) for job in job_dirs(sweep_dir)]
    if not rows:
        raise UserError(f"{sweep_dir} holds no job dirs (0/, 1/, ...); is it a multirun dir?")
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    # The swept parameters are the overrides that differ between jobs.
    params = [k for k in keys if len({json.dumps(r["overrides"].get(k)) for r in rows}) > 1] or keys
    table = pd.DataFrame([{"job": r["job"], **{p: r["overrides"].get(p) for p in params},
                           **{k: v for k, v in r.items() if k not in ("job", "overrides")}} for r in rows])
    atomic_write_text(sweep_dir / REPORT_CSV, table.to_csv(index=False))

    metrics = _metrics(rows)

    def cell(row, phase, metric):
        mean = row.get(f"{phase}_{metric}_mean")
        if mean is None:
            return "-"
        if metric in ("failures", "infra_failures"):  # counts: a rate of the test examples, not a score
            return plots.rate_text(mean, row.get("test_examples"))
        std = row.get(f"{phase}_{metric}_std")  # run_summary leaves it out for one run: no spread to show
        return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"

    header = ["job", *params, "status", *[f"baseline {m}" for m in metrics], *[f"final {m}" for m in metrics],
              "paired Δ reward [95% CI]", "best val_reward", "LM calls", "tokens", "cost (USD)", "wall time (s)"]
    lines = [f"# Sweep report: {sweep_dir}", "", f"{len(rows)} jobs, "
             f"{sum(r['status'] in ENDED_AS_ASKED for r in rows)} ran to the end (ok or at their budget). "
             "Mean ± std over each job's runs; "
             "a job without an optimizer reports its untrained program as final.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error']}"
        best = "-" if r["best_val_reward"] is None else f"{r['best_val_reward']:.3f}"
        paired = "-" if r.get("reward_difference") is None else (
            f"{r['reward_difference']:+.3f} [{r['reward_difference_ci95_low']:+.3f}, "
            f"{r['reward_difference_ci95_high']:+.3f}]")
        values = [str(r["job"]), *[str(r["overrides"].get(p, "-")) for p in params], status.replace("|", "/"),
                  *[cell(r, "baseline", m) for m in metrics], *[cell(r, "final", m) for m in metrics], paired, best,
                  str(r["lm_calls"] if r["lm_calls"] is not None else "-"),
                  str(r["tokens"] if r["tokens"] is not None else "-"),
                  "-" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}",
                  "-" if r["wall_time_s"] is None else f"{r['wall_time_s']:.0f}"]
        lines.append("| " + " | ".join(values) + " |")
    plot_rows = [{**r, "overrides": {p: r["overrides"].get(p) for p in params}} for r in rows]
    plots.plot_sweep(plot_rows, sweep_dir / REPORT_PNG, params=params, title=_sweep_name(sweep_dir))
    lines += ["", "Choose an arm by its best `val_reward` (the validation score its checkpoint was picked by); "
              "the test reward is for reporting the chosen arm, not for choosing: picking the best of several "
              "test scores overstates it.", "", f"![sweep]({REPORT_PNG})", ""]
    atomic_write_text(sweep_dir / REPORT_MD, "\n".join(lines))
    write_html(sweep_dir / REPORT_MD)  # after the plot: it inlines sweep_report.png
    return rows


def redact_multirun_yaml(path: Path) -> None:
    """Hydra's own multirun.yaml copies the command line and the config: mask every secret there."""
    if not path.is_file():
        return
    data = yaml.safe_load(path.read_text())
    collect_from_overrides((data.get("hydra", {}).get("overrides", {}) or {}).get("task") or [])
    redacted = scrub_config(data)
    if redacted != data:  # rewrite (and reformat) Hydra's file only to mask a secret
        atomic_write_text(path, yaml.safe_dump(redacted, sort_keys=False))


try:  # the Hydra callback (Hydra is a dependency of the CLI layer, not of the library)
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object


LAST_REPORT: tuple[Path, list[dict]] | None = None  # the CLI reads it to set its exit status
SWEEP_DIR: Path | None = None  # the sweep under way (the CLI masks its multirun.yaml whatever happens)
OPEN_SWEEP: "SweepReportCallback | None" = None  # a sweep whose report and tracked run are not closed yet


def close_stopped_sweep() -> None:
    """A sweep stopped before Hydra's multirun end (Ctrl-C in a job, a job's SystemExit) still gets the
    report of the jobs that got going, and its tracked run ends KILLED instead of staying RUNNING."""
    if OPEN_SWEEP is not None and SWEEP_DIR is not None:
        try:
            OPEN_SWEEP.close(SWEEP_DIR, stopped=True)
        except Exception as error:  # noqa: BLE001 - the stop's own message comes first; the run is closed anyway
            print(f"sweep report not written: {type(error).__name__}: {error}")


class SweepReportCallback(_HydraCallback):
    """Writes the sweep report into the sweep dir when a multirun ends."""

    def on_multirun_start(self, config, **kwargs) -> None:
        # Known before Hydra writes multirun.yaml: the CLI masks it even when no job ever starts.
        global SWEEP_DIR, OPEN_SWEEP
        SWEEP_DIR = Path(config.hydra.sweep.dir)
        self.tracker = None
        if config.get("logger"):  # +logger=mlflow: the sweep's parent run, which every job nests under
            from promptrl.experiment.build import instantiate_node

            try:
                self.tracker = instantiate_node(config.logger, "logger")
                self.tracker.start_sweep(SWEEP_DIR, parse_overrides(list(config.hydra.overrides.task)),
                                         store_root=Path(config.hydra.runtime.cwd) / "outputs")
            except UserError as error:  # no job starts untracked; Hydra would only warn about an Exception
                raise SystemExit(f"error: {error}") from None
        OPEN_SWEEP = self

    def on_job_start(self, config, **kwargs) -> None:
        # Hydra has written multirun.yaml by now: mask secrets while the sweep runs, not only after.
        if config.hydra.mode and str(config.hydra.mode).endswith("MULTIRUN"):
            redact_multirun_yaml(Path(config.hydra.sweep.dir) / "multirun.yaml")

    def on_multirun_end(self, config, **kwargs) -> None:
        self.close(Path(config.hydra.sweep.dir))

    def close(self, sweep_dir: Path, stopped: bool = False) -> None:
        """The report of the jobs in `sweep_dir`, then the tracked run's end (once)."""
        global LAST_REPORT, OPEN_SWEEP
        from promptrl.report_html import html_path_for

        tracker, self.tracker = getattr(self, "tracker", None), None
        OPEN_SWEEP = None
        rows, error = None, None
        try:
            redact_multirun_yaml(sweep_dir / "multirun.yaml")
            if sweep_dir.is_dir() and job_dirs(sweep_dir):
                rows = write_report(sweep_dir)
                LAST_REPORT = (sweep_dir, rows)
                print(f"sweep report{' (stopped)' if stopped else ''}: {sweep_dir / REPORT_MD}")
        except BaseException as raised:
            error = raised
            raise
        finally:  # +logger=mlflow: the sweep's run never stays RUNNING, whatever failed above
            if tracker is not None:
                files = [sweep_dir / name for name in (REPORT_CSV, REPORT_MD, REPORT_PNG)]
                tracker.end(*self.ending(rows, error, stopped),
                            files=[*files, html_path_for(sweep_dir / REPORT_MD)])

    @staticmethod
    def ending(rows: list[dict] | None, error: BaseException | None, stopped: bool = False) -> tuple[str, str]:
        """(status, reason) of the sweep's tracked run: interrupted when the sweep was stopped; failed
        when a job failed or was interrupted (a job stopped by its budget ended as asked), or when no
        report could be written."""
        if stopped:
            return "interrupted", f"sweep stopped after {len(rows or [])} job(s) got going"
        if error is not None:
            return "failed", f"sweep report not written: {type(error).__name__}: {error}"
        if not rows:
            return "failed", "no job ran"
        failed = [r for r in rows if r["status"] not in NOT_FAILED]
        return ("failed", f"{len(failed)} of {len(rows)} jobs failed, were interrupted or did not finish") \
            if failed else ("ok", "")

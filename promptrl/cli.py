"""The `promptrl` command: thin Typer commands that hand Hydra overrides to `hydra.main`.

Hydra gets the real argv (swapped in around the `hydra.main` call), so multirun, launchers,
`--cfg job`, `--info` and run dirs all work as in any Hydra app. User errors print one line.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import sys
import traceback
from pathlib import Path

import typer

from promptrl import __version__
from promptrl import secrets
from promptrl.io import atomic_write_text
from promptrl.overrides import override_key

CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}
log = logging.getLogger("promptrl")


def config_dir() -> Path:
    """The Hydra config groups: conf/ of the checkout (installed as the package promptrl.conf),
    or $PROMPTRL_CONFIG_DIR for a config tree of your own."""
    from importlib.resources import files

    path = Path(os.environ.get("PROMPTRL_CONFIG_DIR") or str(files("promptrl.conf")))
    if not (path / "train.yaml").is_file():
        raise typer.BadParameter(f"no promptrl configs in {path}; set PROMPTRL_CONFIG_DIR to a conf/ folder")
    return path


def config_groups_help() -> str:
    """Config groups and their options, read from conf/ (shown in --help)."""
    try:
        root = config_dir()
    except typer.BadParameter:
        return ""
    # "\b" keeps click from re-wrapping the paragraph that follows it.
    lines = ["\b", "Config groups (GROUP=OPTION; optimizer, experiment, hparams_search and logger are added: +GROUP=OPTION):"]
    for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        lines.append(f"  {group.name:<16} {', '.join(options)}")
    lines += ["", "\b", "Override any key: nb_runs=5 dataset.test_size=50 language_model.model=openai/gpt-4o-mini",
              "Sweep: -m +optimizer=random_few_shot optimizer.k=1,3,5    Composed config: --cfg job    "
              "Tracebacks: --debug"]
    return "\n".join(lines)


# Plain tracebacks (--debug): rich's would print local variables and wrap lines across a secret.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="promptrl - train LM programs with rewards (the prompts are the weights).")


def _version(value: bool):
    if value:
        typer.echo(f"promptrl {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")):
    """promptrl - train LM programs with rewards (the prompts are the weights)."""
    _guard_outputs([])


def _guard_outputs(overrides: list[str]) -> None:
    """Mask secrets in everything this process prints: the provider keys of the environment and
    those given on the command line are known from the start (before Hydra prints a job line)."""
    secrets.collect_from_environment()
    secrets.collect_from_overrides(overrides)
    secrets.scrub_standard_streams()


def _collect_composed_secrets(config_name: str, args: list[str]) -> None:
    """`--cfg`/`--info` print the config before any job starts: compose it first so secrets set in
    config files (not only on the command line) are known."""
    if not {"--cfg", "-c", "--info", "-i"} & set(args):
        return
    overrides = _overrides_in(args)
    try:
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
        secrets.collect(OmegaConf.to_container(cfg, resolve=False))
    except Exception:  # noqa: BLE001 - Hydra itself reports a bad command line, as one line
        pass


def _overrides_in(args: list[str]) -> list[str]:
    """The Hydra overrides among the arguments (flags such as `--cfg job` and their values left out)."""
    overrides, given = [], iter(args)
    for arg in given:
        if arg in ("--cfg", "-c", "--package", "-p", "--info", "-i"):
            next(given, None)  # the flag's value
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


def _top_level_names(config_name: str) -> tuple[set[str], set[str]]:
    """(keys a run's config can hold at its top level, the config groups that are only added with
    +GROUP=OPTION), read from conf/: the primary config's keys and groups, and the keys that
    `@package _global_` options (experiments, hparams_search) set."""
    import yaml

    root = config_dir()
    primary = yaml.safe_load((root / f"{config_name}.yaml").read_text()) or {}
    defaults = {next(iter(d)) if isinstance(d, dict) else d for d in primary.get("defaults", [])}
    groups = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")}
    names = {k for k in primary if k != "defaults"} | groups | {"hydra"}
    for option in root.glob("*/*.yaml"):
        text = option.read_text()
        if text.lstrip().startswith("# @package _global_"):
            names |= {k for k in (yaml.safe_load(text) or {}) if k != "defaults"}
    return names, groups - defaults


def _check_keys(config_name: str, args: list[str], command: str) -> None:
    """A key the config does not have is a typo: refused with the nearest key, also when added
    with `+` (Hydra would add it, and nothing would read it: `+epoch=3` ran 2 epochs)."""
    import difflib
    import re

    names, _ = _top_level_names(config_name)
    for override in _overrides_in(args):
        if "=" not in override and not override.startswith("~"):
            continue
        key = override_key(override)
        top = re.split(r"[./@]", key, maxsplit=1)[0]  # a.b=1, hydra/launcher=joblib, group@package=option
        if top and top not in names:
            near = difflib.get_close_matches(top, sorted(names), n=1)
            guess = f"did you mean {key.replace(top, near[0], 1)}? " if near else ""
            _fail(f"unknown key '{top}' in {override}: {guess}(a run's keys and groups: {', '.join(sorted(names))}; "
                  f"`promptrl {command} --cfg job` prints them with their values)")


def _rewrite_hydra_error(report: str, config_name: str, args: list[str], command: str) -> str | None:
    """Hydra's error as the fix: an option the command does not have is named (not argparse's usage);
    for 'Could not override', a key of an optional group that is not chosen (`optimizer.k=3` with no
    +optimizer=...) names the group to add, not Hydra's `+optimizer.k`; a key its node does not have
    gets the nearest one."""
    import difflib
    import re

    unknown = re.search(r"unrecognized arguments: (.+)", report)
    if unknown:  # an option the command does not have: name it, not Hydra's whole argparse usage
        options = unknown.group(1).strip()
        return f"unknown option {options}{_hint(report, command)}"
    match = re.search(r"Could not override '([^']+)'.*?Key '([^']+)' is not in struct", " ".join(report.split()))
    if not match:
        return None
    key, missing = match.groups()
    _, optional = _top_level_names(config_name)
    if key.split(".", 1)[0] == missing and missing in optional:
        options = sorted(f.stem for f in (config_dir() / missing).glob("*.yaml"))
        example = "random_few_shot" if "random_few_shot" in options else options[0]
        return (f"{key} sets a key of the {missing}, but no {missing} is chosen: add +{missing}=OPTION before it "
                f"(options: {', '.join(options)}), e.g. `promptrl {command} +{missing}={example} {key}=...`")
    parent, _, leaf = key.rpartition(".")
    siblings = _keys_of(config_name, parent, [o for o in _overrides_in(args) if override_key(o) != key])
    if not parent or not siblings:
        return None
    near = difflib.get_close_matches(leaf, siblings, n=1)
    guess = f"did you mean {parent}.{near[0]}? " if near else ""
    return (f"unknown key '{key}': {guess}({parent} has {', '.join(siblings)}; a setting it does not list is "
            f"added with +{key}=VALUE)")


def _keys_of(config_name: str, node: str, overrides: list[str]) -> list[str]:
    """The keys of one node of the composed config (empty if it cannot be composed)."""
    try:
        from hydra import compose, initialize_config_dir
        from omegaconf import DictConfig, OmegaConf

        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            value = OmegaConf.select(compose(config_name, overrides=overrides), node)
        return sorted(value) if isinstance(value, DictConfig) else []
    except Exception:  # noqa: BLE001 - another mistake on the command line: Hydra's own message then
        return []


def _one_line(text: str) -> str:
    """Hydra's multi-line error report as one line (its 'HYDRA_FULL_ERROR' hint and search-path
    dump dropped)."""
    text = text.split("Config search path", 1)[0]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    lines = [ln for ln in lines if not ln.startswith(("Traceback", "File ", "^"))]
    return " ".join(lines).replace("\t", " ")


# Config nodes that Hydra plugins register, and the fix when Hydra cannot find one.
PLUGIN_FIXES = {
    "hydra/launcher/ray": "an optional extra: run `make install-ray`",
    # built in (hydra_plugins/promptrl_optuna_sweeper): missing only from a broken or partial install
    "hydra/sweeper/optuna": "promptrl's Optuna sweeper plugin was not found: reinstall promptrl with `make install`",
}


def _hint(report: str, command: str) -> str:
    """The fix for a Hydra composition error: a plugin to install, or where to look."""
    for missing, fix in PLUGIN_FIXES.items():
        if f"Could not find '{missing}'" in report or f"Could not load '{missing}'" in report:
            return f" ({fix})"
    return f" (see `promptrl {command} --help` for groups and options)"


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise SystemExit(1)


class _StderrGate(io.TextIOBase):
    """Holds stderr while Hydra composes the config, so a composition error can be shown as one
    line; the first job releases it (a job in another process - joblib, Ray - has its own stderr)."""

    def __init__(self, real):
        self.real, self.buffer, self.released = real, io.StringIO(), False

    def write(self, text: str) -> int:
        return (self.real if self.released else self.buffer).write(text)

    def flush(self) -> None:
        self.real.flush()

    def release(self) -> None:
        self.released = True
        self.real.write(self.buffer.getvalue())
        self.buffer = io.StringIO()


class HydraJob:
    """What `hydra.main` runs for each job. A plain picklable object: launchers such as joblib
    and Ray ship it to other processes."""

    def __init__(self, task, debug: bool, command: str = "train"):
        self.task, self.debug, self.command = task, debug, command

    def __call__(self, cfg):
        import yaml
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from promptrl.errors import UserError

        if isinstance(sys.stderr, _StderrGate):  # composition succeeded
            sys.stderr.release()
        hydra_cfg = HydraConfig.get()
        # A job may run in another process (joblib, Ray): learn the secrets again and guard its outputs.
        _guard_outputs(list(hydra_cfg.overrides.task))
        secrets.collect(_plain(cfg))
        secrets.scrub_log_handlers()
        output_dir = Path(hydra_cfg.runtime.output_dir)
        in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / "overrides.yaml",
                          yaml.safe_dump(list(hydra_cfg.overrides.task), width=10_000, allow_unicode=True))
        try:
            return self.task(cfg, output_dir, list(hydra_cfg.overrides.task))
        except KeyboardInterrupt:
            typer.secho(f"interrupted: every file written so far is in {output_dir}; continue with "
                        f"`promptrl {self.command} --resume {shlex.quote(str(output_dir))}`", err=True,
                        fg=typer.colors.YELLOW)
            raise SystemExit(130) from None
        except Exception as error:  # noqa: BLE001
            if self.debug or not (in_sweep or isinstance(error, UserError)):
                raise
            if in_sweep:  # one failed job must not stop the sweep: its report row says why (and how to resume it)
                reason = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
                reason += self._resume_hint(output_dir)
                atomic_write_text(output_dir / "FAILED", reason + "\n\n" + traceback.format_exc())
                log.error("job failed: %s", reason)
                return float("nan")  # what an optimizing sweeper (Optuna) records as a failed trial
            _fail(f"{error}{self._resume_hint(output_dir)}")

    def _resume_hint(self, output_dir: Path) -> str:
        """How to continue a run that stopped after paying for calls (a provider down mid-run, the
        failure budget), replaying them; nothing when no call was answered (running it again is the same)."""
        import json

        from promptrl.experiment.status import read_status

        status = read_status(output_dir) or {}
        try:
            usage = json.loads((output_dir / "usage.json").read_text())["language_models"]
            # answered calls show as tokens (or, from a server that reports none, as calls beyond the failures)
            paid = sum(max(u.get("calls", 0) - u.get("failures", 0), 0) + u.get("prompt_tokens", 0)
                       + u.get("cache_hits", 0) for u in usage.values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            paid = 0
        if status.get("command") != self.command or status.get("phase") in (None, "setup") or paid <= 0:
            return ""
        kept = " (paid replies are kept)" if (output_dir / "reply_cache").is_dir() else ""
        return f"; once fixed, continue with `promptrl {self.command} --resume {shlex.quote(str(output_dir))}`{kept}"


def _plain(cfg):
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an interpolation that fails is reported by the job itself
        return OmegaConf.to_container(cfg, resolve=False)


def run_hydra(command: str, config_name: str, args: list[str], multirun: bool, debug: bool, task) -> None:
    import hydra

    from promptrl import sweep

    _guard_outputs(args)
    _check_keys(config_name, args, command)
    _collect_composed_secrets(config_name, args)

    if debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    main_fn = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(
        HydraJob(task, debug, command))
    saved_argv, saved_stderr = sys.argv, sys.stderr
    sys.argv = [f"promptrl {command}", *args, *(["--multirun"] if multirun else [])]
    gate = _StderrGate(saved_stderr)
    if not debug:
        sys.stderr = gate
    sweep.LAST_REPORT = sweep.SWEEP_DIR = sweep.OPEN_SWEEP = None
    try:
        main_fn()
    except SystemExit as exit_:
        held = gate.buffer.getvalue()
        if exit_.code not in (0, None) and not gate.released and held.strip():
            gate.buffer = io.StringIO()
            _fail(_rewrite_hydra_error(held, config_name, args, command) or _one_line(held) + _hint(held, command))
        raise
    except Exception as error:  # noqa: BLE001 - Hydra rejecting the command line before any job ran
        if debug:
            raise
        sys.stderr = saved_stderr
        _fail(f"{error} (see `promptrl {command} --help`)")
    finally:
        sys.argv, sys.stderr = saved_argv, saved_stderr
        if gate.buffer.getvalue():
            saved_stderr.write(gate.buffer.getvalue())
        if sweep.SWEEP_DIR is not None:  # also when Hydra gave up before any job started
            sweep.redact_multirun_yaml(sweep.SWEEP_DIR / "multirun.yaml")
            sweep.close_stopped_sweep()
    if sweep.LAST_REPORT is not None:
        sweep_dir, rows = sweep.LAST_REPORT
        failed = [r for r in rows if r["status"] not in sweep.NOT_FAILED]
        if failed:  # every other job ran and is in the report; the exit status still tells scripts and CI
            _fail(f"{len(failed)} of {len(rows)} jobs failed (first: {failed[0]['error']}); "
                  f"see {sweep_dir / sweep.REPORT_MD}")


def _print_usage(usage: dict) -> None:
    """One line per LM role: what the run cost."""
    for role, u in usage["language_models"].items():
        tokens = u["prompt_tokens"] + u["completion_tokens"]
        replayed = f" (+${u['replayed_cost']:.4f} paid earlier, replayed)" if u.get("replayed_cost") else ""
        typer.echo(f"{role} LM {u['model']}: {u['calls']} calls, {tokens} tokens, ${u['cost']:.4f}{replayed}, "
                   f"{u['cache_hits']} cache hits, {u['failures']} failures")
    typer.echo(f"wall time: {usage['wall_time_s']:.0f} s")


def _table_title(cfg) -> str:
    return f"{cfg.task_name}: " + ("one run (no spread)" if cfg.nb_runs == 1 else f"mean ± std over {cfg.nb_runs} runs")


def _print_table(title: str, results: dict[str, dict | None]) -> None:
    from rich.console import Console
    from rich.table import Table

    from promptrl.experiment.results import format_cell

    present = {label: r for label, r in results.items() if r}
    if not present:
        return
    table = Table(title=title)
    table.add_column("metric")
    for label in present:
        table.add_column(f"{label} (mean ± std)", justify="right")
    keys = list(next(iter(present.values()))["mean"])
    for key in keys:
        table.add_row(key, *[format_cell(r, key) for r in present.values()])
    Console().print(table)


@app.command(context_settings=CONTEXT, epilog=config_groups_help())
def train(
    ctx: typer.Context,
    multirun: bool = typer.Option(False, "-m", "--multirun", help="Run a sweep (Hydra multirun)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Build and check the run, call no LM, print and write "
                                                           "plan.json: the calls of each phase, tokens and cost."),
    resume: Path = typer.Option(None, "--resume", help="Run dir of a train run that stopped (crash, kill, outage, "
                                                       "budget): run it again in place, its paid replies replayed "
                                                       "from its reply cache."),
):
    """Baseline runs -> fit with best checkpoint on val_reward -> final runs -> plots and report.

    Pass Hydra overrides after the command, e.g. `promptrl train +optimizer=random_few_shot nb_runs=5`.
    """
    from promptrl.experiment import run_plan, run_train

    def task(cfg, output_dir: Path, overrides: list[str]) -> float | None:
        if dry_run:
            plan = run_plan(cfg, output_dir)
            bound = " (optimizer calls: at most)" if plan["upper_bound"] else ""
            typer.echo(f"dry run - no LM called{bound}:")
            for phase, n in plan["calls"].items():
                typer.echo(f"  {phase:<18} {n:>8} calls")
            typer.echo(f"  ~{plan['tokens']['total']} tokens, ~${plan['cost']:.4f} "
                       f"(program {plan['models']['program']}, optimizer {plan['models']['optimizer'] or '-'})")
            typer.echo(f"plan: {output_dir / 'plan.json'}")
            return None
        result = run_train(cfg, output_dir, progress=progress, log=log.info)
        _print_table(_table_title(cfg),
                     {"baseline": result["baseline"], "trained": result["final"]})
        c = result["comparison"]
        if c and c["examples"]:
            left_out = f"; {c['excluded_examples']} left out: no answer in some run" if c["excluded_examples"] else ""
            typer.echo(f"paired difference trained - baseline: {c['reward_difference']:+.3f} "
                       f"(95% CI {c['ci95'][0]:+.3f} to {c['ci95'][1]:+.3f} over {c['examples']} test examples{left_out})")
        _print_usage(result["usage"])
        if result["status"]["status"] != "ok":
            typer.echo(f"status: {result['status']['status']} - {result['status']['reason']}")
        typer.echo(f"run dir: {output_dir}")
        # The job's value for sweepers that optimize (Optuna): a validation score, never a test score.
        return result["best"]["value"] if result["best"] else None

    args = _resume_args(resume, ctx.args, multirun, "train") if resume is not None else ctx.args
    run_hydra("train", "train", args, multirun, debug, task)


def _resume_args(run_dir: Path, args: list[str], multirun: bool, command: str) -> list[str]:
    """The overrides a stopped run was started with (plus any given now), into its own run dir.
    Every call it made is deterministic (seeded) and its replies are in its reply cache, so the
    rerun replays them for free and carries on from where it stopped."""
    import yaml

    from promptrl.experiment.status import read_status, still_running

    if multirun:
        _fail("--resume takes one run dir; resume the jobs of a sweep one by one")
    if not run_dir.is_dir():
        _fail(f"no run dir {run_dir}: pass the run dir a stopped `promptrl {command}` printed (outputs/<task>/runs/...)")
    run_status = read_status(run_dir)
    if run_status is None or not (run_dir / "overrides.yaml").is_file():
        _fail(f"nothing to resume in {run_dir}: pass the run dir of a `promptrl {command}` run (it holds status.json)")
    if run_status.get("status") == "ok":
        _fail(f"{run_dir} finished (status ok): nothing to resume")
    # status.json names its command; one written before it did is a train run if training got going
    started_by = run_status.get("command") or ("train" if (run_dir / "initial.program.json").is_file() else None)
    if started_by != command:
        _fail(f"{run_dir} is a `promptrl {started_by}` run, not a `promptrl {command}` run: resume it with "
              f"`promptrl {started_by} --resume {run_dir}`" if started_by else
              f"{run_dir} is not a `promptrl {command}` run that got going; run it again instead of resuming it")
    if command == "train" and not (run_dir / "initial.program.json").is_file():
        _fail(f"{run_dir} stopped during setup, before training got going; run it again instead of resuming it")
    status = run_status.get("status")
    if still_running(run_status):
        _fail(f"{run_dir} is still running (pid {run_status['pid']}); stop it first (kill {run_status['pid']})")
    given = {override_key(a) for a in args}
    saved = [o for o in yaml.safe_load((run_dir / "overrides.yaml").read_text()) or []
             if override_key(o) not in given and not o.startswith("hydra.run.dir=")]
    masked = [o for o in saved if secrets.MASK in o]
    if masked:
        _fail(f"the run was started with a secret that was never written down ({masked[0]}); give it again "
              f"after --resume, e.g. {masked[0].split('=', 1)[0]}=...")
    replayed = ("paid replies are replayed from its reply cache" if (run_dir / "reply_cache").is_dir()
                else "it kept no replies (reply_cache=false): every call is made again")
    typer.echo(f"resuming {run_dir} (was {status or 'unknown'}): {replayed}")
    return [*saved, *args, f"hydra.run.dir={_quoted(run_dir)}"]


def _quoted(path: Path) -> str:
    """A path as one value of Hydra's override grammar (',' or "'" in it would split or break it)."""
    text = str(path.resolve()).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


@app.command(context_settings=CONTEXT, epilog=config_groups_help())
def evaluate(
    ctx: typer.Context,
    runs: int = typer.Option(None, "--runs", help="Number of evaluation runs (nb_runs, checked with the config)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A *.program.json to evaluate."),
    trust_checkpoint_endpoint: bool = typer.Option(
        False, "--trust-checkpoint-endpoint",
        help="Call the endpoint saved in the checkpoint (api_base, headers) instead of the configured one; "
             "only for a file you wrote yourself."),
    multirun: bool = typer.Option(False, "-m", "--multirun", help="Run a sweep (Hydra multirun)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    resume: Path = typer.Option(None, "--resume", help="Run dir of an evaluate run that stopped (crash, kill, "
                                                       "outage): run it again in place, its paid replies replayed "
                                                       "from its reply cache."),
):
    """Evaluate a program (from the config or a checkpoint): mean ± std over runs."""
    from promptrl.experiment import run_evaluate

    args = list(ctx.args)
    if runs is not None:
        args.append(f"nb_runs={runs}")
    if checkpoint is not None:
        if not checkpoint.is_file():
            _fail(f"checkpoint not found: {checkpoint}; pass the path of a *.program.json from a run dir")
        args.append(f"checkpoint={_quoted(checkpoint)}")
    if trust_checkpoint_endpoint:
        args.append("trust_checkpoint_endpoint=true")
    if resume is not None:
        args = _resume_args(resume, args, multirun, "evaluate")
    # A checkpoint keeps its own language model; `language_model=NAME` replaces it,
    # `language_model.KEY=VALUE` changes only that setting of it (a resumed run: as it was started).
    lm_args = [override_key(a) for a in args if override_key(a).startswith("language_model")]
    replaced = {"language_model", "language_model._target_"} & set(lm_args)
    override_lm = True if replaced else [a.split(".", 1)[1] for a in lm_args if "." in a]

    def task(cfg, output_dir: Path, overrides: list[str]) -> None:
        result = run_evaluate(cfg, output_dir, progress=progress, log=log.info, override_language_model=override_lm)
        _print_table(_table_title(cfg), {"evaluation": result["evaluation"]})
        _print_usage(result["usage"])
        typer.echo(f"run dir: {output_dir}")

    run_hydra("evaluate", "evaluate", args, multirun, debug, task)


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def report(sweep_dir: Path = typer.Argument(..., help="A multirun dir: outputs/<task>/multiruns/<timestamp>")):
    """Write (or rewrite) the sweep report of an existing sweep dir: CSV, markdown and plot."""
    from promptrl.errors import UserError
    from promptrl.sweep import ENDED_AS_ASKED, REPORT_MD, write_report

    try:
        rows = write_report(sweep_dir)
    except UserError as error:
        _fail(str(error))
    ended = sum(r["status"] in ENDED_AS_ASKED for r in rows)
    typer.echo(f"{len(rows)} jobs ({ended} ran to the end): {sweep_dir / REPORT_MD}")


if __name__ == "__main__":
    app()

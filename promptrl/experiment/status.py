"""Run status as data: `status.json` in every run dir, written atomically and kept current.

    {"status": "running" | "ok" | "budget_reached" | "failed" | "interrupted", "reason": "...", "phase": "...",
     "command": "train" | "evaluate", "started": "...", "updated": "...", "infra_failures": {...}}

`failed`: the run stopped on an error it names (an endpoint that cannot be used, a provider that
is down, too many calls without an answer). `interrupted`: SIGINT/SIGTERM; what was computed is
kept. The report's first lines and the sweep report show it.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from promptrl.errors import FailureBudgetExceeded
from promptrl.io import atomic_write_json

STATUS_FILE = "status.json"
# A run that ended as asked, a stop at its LM-call budget included: its results are whole, not a failure.
ENDED_AS_ASKED = ("ok", "budget_reached")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class RunStatus:
    def __init__(self, out: Path, command: str):
        self.path = Path(out) / STATUS_FILE
        import os
        import socket

        self.data = {"status": "running", "reason": "", "phase": "setup", "command": command, "started": _now(),
                     "updated": _now(), "infra_failures": {}, "host": socket.gethostname(), "pid": os.getpid()}
        self._write()

    def _write(self) -> None:
        self.data["updated"] = _now()
        atomic_write_json(self.path, self.data)

    def phase(self, name: str) -> None:
        self.data["phase"] = name
        self._write()

    def infra_failures(self, what: str, count: int, total: int) -> None:
        if count:
            self.data["infra_failures"][what] = f"{count}/{total}"
            self._write()

    def end(self, status: str, reason: str = "") -> None:
        self.data.update(status=status, reason=reason)
        self._write()

    @property
    def status(self) -> str:
        return self.data["status"]


def check_failure_budget(what: str, infra_failures: int, total: int, max_failure_rate: float) -> None:
    """Stop when more than `max_failure_rate` of a phase's calls got no answer: its scores would
    describe the provider's outage, not the program."""
    if total and infra_failures / total > max_failure_rate:
        raise FailureBudgetExceeded(
            f"{what}: {infra_failures} of {total} examples got no answer from the provider "
            f"({infra_failures / total:.0%} > max_failure_rate={max_failure_rate:.0%}); the results would not mean "
            "anything - check the provider (usage.json), or raise max_failure_rate")


def read_status(run_dir: Path) -> dict | None:
    import json

    path = Path(run_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def still_running(status: dict | None) -> bool:
    """A run whose process is alive on this host (status.json 'running' and its pid answers)."""
    import os
    import socket

    if not status or status.get("status") != "running" or status.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(status.get("pid")), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True

"""Atomic file writes (temp file + rename): a crash never leaves a half-written result.

Every text file promptrl writes passes here, so every one is scrubbed of known secrets."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from promptrl.secrets import scrub, scrub_data

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, scrub(text).encode("utf-8"))


def atomic_write_json(path, data) -> Path:
    return atomic_write_text(path, json.dumps(scrub_data(data), indent=2, ensure_ascii=False, default=str) + "\n")

"""Derived seeds: one `seed` gives every run, epoch, example and LM call its own stable seed."""

from __future__ import annotations

import hashlib
from typing import Any


def derive_seed(seed: int | None, *parts: Any) -> int | None:
    """A child seed from a parent seed and labels, e.g. derive_seed(0, "run", 2); None stays None.
    Stable across processes and Python versions (no `hash()`)."""
    if seed is None:
        return None
    digest = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

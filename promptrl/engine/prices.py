"""Token prices from litellm's bundled price table, read as JSON without importing litellm
(importing it costs seconds and most of the memory of a run)."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

_TABLE = "model_prices_and_context_window_backup.json"
_ENTRY_MAX = 64_000  # bytes: entries are ~2 KB
_SLOW = object()


def _table_path() -> Path | None:
    spec = importlib.util.find_spec("litellm")  # locates the package; runs none of its code
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / _TABLE


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    path = _table_path()
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}


def _entry(data: bytes, key: str):
    """The table's entry for `key` parsed alone, None when the table never names it, _SLOW when the
    bytes do not say for sure (then the whole table is parsed: ~25 ms, a fifth of `import promptrl`
    + first call, against ~3 ms for this)."""
    if not (key.isascii() and key.isprintable()) or '"' in key or "\\" in key:
        return _SLOW
    quoted = f'"{key}"'.encode()
    if "/" in key and quoted.replace(b"/", b"\\/") in data:  # written with escaped slashes
        return _SLOW
    named = data.count(quoted)
    if named == 0:
        return None
    start = data.find(quoted)
    brace = start + len(quoted) + 2
    if named > 1 or data[start - 5:start] != b"\n    " or data[start + len(quoted):brace + 1] != b": {":
        return _SLOW  # named elsewhere too, or not as a top-level key of the indent=4 layout
    try:
        return json.JSONDecoder().raw_decode(data[brace:brace + _ENTRY_MAX].decode("utf-8"))[0]
    except ValueError:  # longer than _ENTRY_MAX, or cut inside a character
        return _SLOW


@functools.lru_cache(maxsize=256)
def price_per_token(model: str) -> tuple[float, float]:
    """(input, output) USD per token for `openai/gpt-4o-mini`, `gpt-4o-mini`...; (0, 0) if unknown
    (a self-hosted model costs nothing per token)."""
    path = _table_path()
    try:
        data = path.read_bytes() if path else b""
    except OSError:
        data = b""
    name = model.split("/", 1)[1] if "/" in model else model
    for key in (model, name):
        entry = _entry(data, key)
        if entry is _SLOW:
            entry = _table().get(key)
        if isinstance(entry, dict):
            return float(entry.get("input_cost_per_token") or 0.0), float(entry.get("output_cost_per_token") or 0.0)
    return 0.0, 0.0

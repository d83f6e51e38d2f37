"""Token prices from litellm's bundled price table, read as JSON without importing litellm
(importing it costs seconds and most of the memory of a run)."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

_TABLE = "model_prices_and_context_window_backup.json"


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    spec = importlib.util.find_spec("litellm")  # locates the package; runs none of its code
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(list(spec.submodule_search_locations)[0]) / _TABLE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@functools.lru_cache(maxsize=256)
def price_per_token(model: str) -> tuple[float, float]:
    """(input, output) USD per token for `openai/gpt-4o-mini`, `gpt-4o-mini`...; (0, 0) if unknown
    (a self-hosted model costs nothing per token)."""
    table = _table()
    name = model.split("/", 1)[1] if "/" in model else model
    for key in (model, name):
        entry = table.get(key)
        if isinstance(entry, dict):
            return float(entry.get("input_cost_per_token") or 0.0), float(entry.get("output_cost_per_token") or 0.0)
    return 0.0, 0.0

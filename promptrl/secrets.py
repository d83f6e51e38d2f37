"""Keep secrets out of every file promptrl writes: configs, checkpoints, sweep files."""

from __future__ import annotations

from typing import Any

SECRET_KEYS = ("api_key", "token", "secret", "password", "authorization")


def is_secret(key) -> bool:
    return any(s in str(key).lower() for s in SECRET_KEYS)


def redact(value: Any) -> Any:
    """A copy with the value of every secret-looking key (api_key, token, ...) replaced by '***'."""
    if isinstance(value, dict):
        return {k: "***" if v and is_secret(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_override(override: str) -> str:
    """`language_model.api_key=sk-...` -> `language_model.api_key=***` (a Hydra command-line override)."""
    key, sep, _ = override.partition("=")
    return f"{key}{sep}***" if sep and is_secret(key) else override

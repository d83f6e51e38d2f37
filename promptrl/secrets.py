"""Keep secrets out of every file promptrl writes: configs, checkpoints, sweep files."""

from __future__ import annotations

import re
from typing import Any

# api_key, openai_api_key, access_token, token, aws_secret_access_key, password, authorization...
# but not max_tokens or prompt_tokens.
_SECRET = re.compile(r"(api_?key|(^|_)token|secret|password|authorization|credential)", re.IGNORECASE)
_NOT_SECRET = re.compile(r"tokens$", re.IGNORECASE)


def is_secret(key) -> bool:
    key = str(key)
    return bool(_SECRET.search(key)) and not _NOT_SECRET.search(key)


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
    return f"{key}{sep}***" if sep and is_secret(key.rsplit(".", 1)[-1]) else override

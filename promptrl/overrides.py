"""Hydra command-line overrides as text (`key=value`, `+key=value`, `~key`): one parser for every
place that reads them back (resume, evaluate's checkpoint rules, secrets, sweep rows and plots)."""

from __future__ import annotations

from typing import Iterable


def split_override(override) -> tuple[str, str, str]:
    """(key, "=" or "", value) of one override, the `+`/`~` prefix dropped: `+a.b=1` -> ("a.b", "=", "1")."""
    return str(override).lstrip("+~").partition("=")


def override_key(override) -> str:
    return split_override(override)[0]


def parse_value(text: str):
    """An override's value as YAML reads it (1, 0.5, true, null, [a, b]); 1e-3 as a number too."""
    import yaml  # not at import: secrets (imported by everything) uses this module

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def parse_overrides(overrides: Iterable[str]) -> dict:
    """{key: value} of a job's overrides, Hydra's own (`hydra.*`) left out."""
    parsed = {}
    for override in overrides:
        key, _, value = split_override(override)
        if not key.startswith("hydra"):
            parsed[key] = parse_value(value)
    return parsed

"""Secrets never leave the process: one redaction by *value*, applied at every exit.

Secret values are collected where they enter - a config value under a secret-looking key
(`*key*`, `*token*`, `*secret*`, `*password*`, `authorization`, `x-api-key`, ...), every value of
a headers mapping, the password in a URL's userinfo, the provider key variables of the
environment - and then scrubbed from every file promptrl writes (`io.atomic_write_*`) and every
line it prints (the CLI wraps stdout/stderr and log handlers). Matching on key names alone is
what let `x-api-key` slip through before: the value is what must not appear, wherever it goes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import urllib.parse
from typing import Any, Iterable

from promptrl.overrides import split_override

MASK = "***"
# api_key, openai_api_key, x-api-key, access_token, aws_secret_access_key, password, authorization,
# cookie... but not max_tokens, prompt_tokens or TOKENIZERS_PARALLELISM.
_SECRET_KEY = re.compile(r"(api[_-]?key|(^|[_-])key$|(^|[_-])pat$|(^|[_-])token($|[_-])|secret|passw(or)?d|authorization|credential|cookie|"
                         r"(^|[_-])auth$|private[_-]?key)", re.IGNORECASE)
_NOT_SECRET_KEY = re.compile(r"tokens$", re.IGNORECASE)
_HEADERS_KEY = re.compile(r"headers$", re.IGNORECASE)
# scheme://user:password@host -> the userinfo is a credential
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s:]*:[^/@\s]*)@")
_MIN_LENGTH = 6  # shorter values ("true", "1234") would mask ordinary text; real keys are longer

_lock = threading.Lock()
_values: set[str] = set()  # every form (raw, JSON-escaped, URL-quoted) of every known secret
_pattern: re.Pattern | None = None


def is_headers_key(key) -> bool:
    """`extra_headers`, `headers`: every value in it is treated as a credential."""
    return bool(_HEADERS_KEY.search(str(key)))


def is_secret_key(key) -> bool:
    key = str(key)
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET_KEY.search(key)


def add_secret(value: Any) -> None:
    """Remember a secret value: from now on it is masked in every file and printed line."""
    global _pattern
    if value is None or isinstance(value, (bool, dict, list, tuple)):
        return
    text = str(value).strip()
    if text.lower().startswith("bearer "):
        text = text[7:].strip()
    if len(text) < _MIN_LENGTH:
        return
    forms = {text, json.dumps(text)[1:-1], urllib.parse.quote(text, safe=""), urllib.parse.quote(text)}
    with _lock:
        if forms <= _values:
            return
        _values.update(forms)
        # Longest first, so a secret that contains another is masked whole.
        _pattern = re.compile("|".join(re.escape(v) for v in sorted(_values, key=len, reverse=True)))


def known_secrets() -> frozenset[str]:
    return frozenset(_values)


def collect(data: Any, key: str | None = None, in_headers: bool = False) -> None:
    """Remember the secrets a config (dict/list tree) holds: values under secret-looking keys,
    every value of a headers mapping, and URL userinfo anywhere."""
    if isinstance(data, dict):
        for k, v in data.items():
            collect(v, str(k), in_headers or is_headers_key(k))
    elif isinstance(data, (list, tuple)):
        for v in data:
            collect(v, key, in_headers)
    elif data is not None:
        if in_headers or (key is not None and is_secret_key(key)):
            add_secret(data)
        if isinstance(data, str):
            collect_from_text(data)


def collect_from_text(text: str) -> None:
    """URL userinfo (`http://user:KEY@host`) and `Bearer KEY` in free text."""
    for match in _USERINFO.finditer(text):
        user, _, password = urllib.parse.unquote(match.group("userinfo")).partition(":")
        add_secret(password)
        add_secret(match.group("userinfo"))
    for match in re.finditer(r"\bBearer\s+(\S+)", text):
        add_secret(match.group(1))


def collect_from_environment(environ=None) -> None:
    """The values of secret-looking variables (OPENAI_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY...)."""
    for name, value in (environ if environ is not None else os.environ).items():
        if is_secret_key(name):
            add_secret(value)


def collect_from_overrides(overrides: Iterable[str]) -> None:
    """Hydra command-line overrides: `+language_model.api_key=KEY`, `...extra_headers={x-api-key: KEY}`,
    and every value of a sweep (`api_key=KEY1,KEY2`): each job's line shows only its own."""
    for override in overrides:
        key, sep, raw = split_override(override)
        if not sep:
            continue
        collect_from_text(raw)
        for value in _override_values(str(override), raw):
            collect(_nest(key.split("."), value))
            if isinstance(value, str):
                collect_from_text(value)


def _override_values(override: str, raw: str) -> list:
    """The value(s) of one override, as Hydra reads them (each choice of a sweep)."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_override(override)
        return list(parsed.sweep_iterator()) if parsed.is_sweep_override() else [parsed.value()]
    except Exception:  # noqa: BLE001 - not Hydra's grammar (or no Hydra): read it as YAML, split a list
        import yaml

        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        return [value, *(raw.split(",") if isinstance(value, str) and "," in raw else [])]


def _nest(parts: list[str], value: Any) -> dict:
    for part in reversed(parts):
        value = {part: value}
    return value


def scrub(text: str) -> str:
    """`text` with every known secret value (and any URL userinfo) masked."""
    if not isinstance(text, str) or not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def scrub_data(value: Any) -> Any:
    """A copy of a JSON-like tree with every known secret masked inside its strings (keys are not
    interpreted: a dataset field named `token` is data, not a credential)."""
    if isinstance(value, dict):
        return {scrub(k) if isinstance(k, str) else k: scrub_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_data(v) for v in value]
    return scrub(value) if isinstance(value, str) else value


def scrub_config(value: Any) -> Any:
    """A config tree made safe to write: its secrets are collected (so they are masked everywhere
    from now on) and masked here, values under secret-looking keys and in headers included."""
    collect(value)
    return _mask_config(value)


def _mask_config(value: Any, key: str | None = None, in_headers: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _mask_config(v, str(k), in_headers or is_headers_key(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_config(v, key, in_headers) for v in value]
    if value is not None and not isinstance(value, bool) and str(value) and (
            in_headers or (key and is_secret_key(key))):
        return MASK
    return scrub(value) if isinstance(value, str) else value


def strip_userinfo(url: str | None) -> str | None:
    """`http://user:KEY@host/v1` -> `http://host/v1` (the credential remembered as a secret)."""
    if not url:
        return url
    collect_from_text(url)
    return _USERINFO.sub(lambda m: m.group("scheme"), url)


# ---- the exits that print ---------------------------------------------------------------------
class ScrubbingStream(io.TextIOBase):
    """A text stream that masks secrets before they reach the real one (stdout, stderr)."""

    def __init__(self, real):
        self.real = real

    def write(self, text: str) -> int:
        self.real.write(scrub(text))
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return self.real.isatty()

    def fileno(self) -> int:
        return self.real.fileno()

    @property
    def encoding(self):
        return getattr(self.real, "encoding", "utf-8")

    def __getattr__(self, name):
        return getattr(self.real, name)


def scrub_standard_streams() -> None:
    """Wrap sys.stdout and sys.stderr (once) so nothing printed can show a known secret."""
    import sys

    if not isinstance(sys.stdout, ScrubbingStream):
        sys.stdout = ScrubbingStream(sys.stdout)
    if not isinstance(sys.stderr, ScrubbingStream):
        sys.stderr = ScrubbingStream(sys.stderr)


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record) -> str:
        return scrub(self.inner.format(record))


def scrub_log_handlers() -> None:
    """Mask secrets in every configured log handler (Hydra's promptrl.log, the console)."""
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not isinstance(handler.formatter, _ScrubbingFormatter):
                handler.setFormatter(_ScrubbingFormatter(handler.formatter))

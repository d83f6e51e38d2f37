"""How a call asks for JSON that follows the output schema, per endpoint.

Modes (`language_model.structured_output`):
- `json_schema`         OpenAI's form: response_format {"type": "json_schema", "json_schema": {...}}
                        (OpenAI, vLLM, ollama's /v1 and, through litellm, ollama's `format`)
- `json_object_schema`  {"type": "json_object", "schema": ...} (llama.cpp servers, llama-cpp-python)
- `json_object`         JSON mode; the schema is only in the prompt
- `none`                no response_format; the reply is validated all the same
- `auto` (default)      starts with json_schema and, when a server rejects a form before any call
                        in it succeeded, falls back along the list above - once, logged, reported
                        in usage.json - and keeps the mode that works for the rest of the run.
"""

from __future__ import annotations

import logging
import re
import threading

from promptrl.engine.scheduler import status_of
from promptrl.errors import one_line

MODES = ("json_schema", "json_object_schema", "json_object", "none")
SETTING = ("auto", *MODES)
# How servers turn down a response_format they do not know: one of these statuses (llama-cpp-python's
# server answers 500 to a request it cannot validate) with a message about the format - so a transient
# 500 or a per-request 400 (context length) never changes the mode.
_REJECTION_STATUS = (400, 415, 422, 500, 501)
_ABOUT_FORMAT = re.compile(r"response_format|json_schema|json_object|guided_json|structured output", re.IGNORECASE)

log = logging.getLogger("promptrl")


def response_format(mode: str, name: str, schema: dict) -> dict | None:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name[:64] or "output", "schema": schema,
                                                       "strict": is_strict_schema(schema)}}
    if mode == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def is_strict_schema(schema: dict) -> bool:
    """OpenAI's strict mode needs every property required and no extra properties, at every level."""
    def strict(node) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                properties = node.get("properties", {})
                if node.get("additionalProperties", True) is not False or set(node.get("required", [])) != set(properties):
                    return False
            return all(strict(v) for v in node.values())
        if isinstance(node, list):
            return all(strict(v) for v in node)
        return True

    return strict(schema)


def about_format(error: BaseException) -> bool:
    """The error is a server turning down the response_format it was sent."""
    return status_of(error) in _REJECTION_STATUS and bool(_ABOUT_FORMAT.search(str(error)))


class StructuredOutput:
    """The mode a language model uses now, and its fallback when a server rejects it."""

    def __init__(self, setting: str, owner: str):
        self.setting = setting
        self.owner = owner
        self.mode = "json_schema" if setting == "auto" else setting
        self.confirmed = setting != "auto"  # a fixed mode never falls back
        self.fallbacks: list[dict] = []
        self._lock = threading.Lock()
        self._formats: dict[tuple, dict | None] = {}

    def response_format(self, name: str, schema: dict) -> tuple[str, dict | None]:
        """(mode, response_format) for a call now, built once per mode and schema."""
        mode = self.mode
        key = (mode, name, id(schema))
        if key not in self._formats:
            self._formats[key] = response_format(mode, name, schema)
        return mode, self._formats[key]

    def confirm(self, mode: str) -> None:
        if mode == self.mode:
            self.confirmed = True

    def rejected(self, mode: str, error: BaseException) -> bool:
        """True when the call should be sent again in the (new) current mode: the server turned
        down `mode` before it ever worked."""
        with self._lock:
            if mode != self.mode:  # another call in flight already moved on: send this one again too
                return about_format(error)
            message = one_line(error, 200)
            if self.confirmed or mode == MODES[-1] or not about_format(error):
                return False
            self.mode = MODES[MODES.index(mode) + 1]
            reason = message if message.startswith("HTTP") else f"HTTP {status_of(error)}: {message}"
            self.fallbacks.append({"from": mode, "to": self.mode, "reason": reason})
            log.warning("%s: the server rejected structured output '%s' (%s); using '%s' from now on",
                        self.owner, mode, reason, self.mode)
            return True

    def report(self) -> dict:
        return {"setting": self.setting, "mode": self.mode, "fallbacks": list(self.fallbacks)}

"""Argument checks shared by constructors: a wrong setting fails at build time, as one line."""

from __future__ import annotations

from promptrl.errors import UserError


def check_number(owner: str, key: str, value, minimum: float | None = None, integer: bool = False) -> None:
    """`value` must be a number (an int if `integer`) >= `minimum`; else a UserError naming `owner.key`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (not integer or isinstance(value, int)) and (minimum is None or value >= minimum)
    if not ok:
        what = "an integer" if integer else "a number"
        bound = "" if minimum is None else f" >= {minimum}"
        raise UserError(f"{owner}: {key}={value!r} is not valid; it must be {what}{bound}")

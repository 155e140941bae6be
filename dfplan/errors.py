"""UserError: a mistake in what a user asked for (a key, a value, a file), reported as one line.

The console scripts print it as `error: <message>` and exit with code 2, without a traceback; the Python API
raises it (a ValueError) with the same message.
"""

from __future__ import annotations

import difflib
import math


class UserError(ValueError):
    pass


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged, foreign, or of another model type than asked for."""


def choices_hint(value, allowed) -> str:
    """' (did you mean X?)' when `value` is close to one of `allowed`, else ''."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(key: str, value, allowed) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not allowed; choose one of {allowed}{choices_hint(value, allowed)}")


def check_int(key: str, value, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """`value` as an int (bools and fractional numbers refused), at least `minimum`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float)
                                                                          and not value.is_integer()):
        raise UserError(f"{key}={value!r} must be a whole number" + (f" >= {minimum}" if minimum is not None else ""))
    if minimum is not None and value < minimum:
        raise UserError(f"{key}={value!r} must be >= {minimum}")
    return int(value)


def check_float(key: str, value, minimum: float | None = None) -> float:
    """`value` as a finite float, at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{key}={value!r} must be a finite number" + (f" >= {minimum}" if minimum is not None else ""))
    if minimum is not None and value < minimum:
        raise UserError(f"{key}={value!r} must be >= {minimum}")
    return float(value)


def check_bool(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{key}={value!r} must be true or false")
    return value

"""argparse value types that name what was expected (so errors read ``argument --steps: expected ...``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _number(parse: Callable[[str], float], ok: Callable[[float], bool], expected: str) -> Callable[[str], Any]:
    """An argparse type: ``parse`` the text, then require ``ok(value)``; errors say ``expected <expected>``."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    convert.__name__ = expected
    return convert


positive_int = _number(int, lambda v: v > 0, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
fraction = _number(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def parse_range(text: str, parse: Callable[[str], float], minimum: float, argument: str,
                unit: str) -> tuple[Any, Any]:
    """``"MIN-MAX"`` or one number → ``(low, high)`` with ``minimum <= low <= high``; otherwise an
    :class:`~mmgen.errors.InvalidArgumentError` naming ``argument`` (``unit`` says what the numbers are)."""
    from mmgen.errors import InvalidArgumentError

    try:
        parts = [parse(v) for v in text.split("-")]
    except ValueError:
        raise InvalidArgumentError(argument, f"{unit} MIN-MAX (e.g. 1-3) or one number", text) from None
    if len(parts) not in (1, 2) or not minimum <= parts[0] <= parts[-1]:
        raise InvalidArgumentError(argument, f"{minimum} <= MIN <= MAX {unit}", text)
    return parts[0], parts[-1]


def existing_path(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"expected an existing file or folder, got {text!r} (not found)")
    return path


def existing_dir(text: str) -> Path:
    path = existing_path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a folder, got {text!r} (a file)")
    return path


def key_value(text: str) -> tuple[str, str]:
    """``key=value`` override (values are parsed as JSON where possible by the config code)."""
    if "=" not in text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


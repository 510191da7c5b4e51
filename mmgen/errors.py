"""Errors that reach users.

Library code raises these for anything a user can fix (a missing file, a bad value, a wrong shape); the CLI turns
them into one line on stderr and exit code 2. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MmgenError(Exception):
    """Base class of every user-facing mmgen error (the CLI prints its message on one line)."""


class InvalidArgumentError(MmgenError, ValueError):
    """A value a user passed is out of range or of the wrong kind.

    Args:
        name: the argument as the user wrote it (``--steps``, ``class_labels``).
        expected: what would have been accepted ("a positive integer").
        got: the offending value (formatted with ``repr`` when not a string).
    """

    def __init__(self, name: str, expected: str, got: object = None):
        self.name, self.expected, self.got = name, expected, got
        got_text = "" if got is None else f", got {got if isinstance(got, str) else repr(got)}"
        super().__init__(f"{name}: expected {expected}{got_text}")


class ConfigError(MmgenError, ValueError):
    """A config (JSON file, ``key=value`` overrides, a registered name) has unknown keys or bad values."""


class CheckpointError(MmgenError):
    """A checkpoint folder or weights file is missing, corrupt, unsafe or does not match its model."""


class DataError(MmgenError):
    """A dataset or shard set cannot be used (no shards found, nothing decodable, wrong layout)."""


class TrainingDiverged(MmgenError):
    """Training stopped because the loss was not finite for too many steps in a row."""


def check_positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an int > 0, else raise :class:`InvalidArgumentError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(name, "a positive integer", value)
    return value

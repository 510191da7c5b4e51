"""Shard listing and raw tar reading (webdataset / img2dataset layout).

A shard is a plain ``.tar`` file whose members are grouped into samples by key, exactly as webdataset does: the key
is the member path up to the first dot of its file name (folders included), the rest is the extension. So
``00001.jpg``, ``00001.txt`` and ``00001.json`` form one sample ``{"__key__": "00001", "jpg": b"...", "txt": b"...",
"json": b"..."}``. Raw samples hold bytes only; decoding is a separate, later step (:mod:`mmgen.data.decode`).
"""

from __future__ import annotations

import glob
import os
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from mmgen.errors import DataError

RawSample = dict[str, object]
"""``{"__key__": str, "__url__": str, <ext>: bytes, ...}``: one sample's members, undecoded."""

_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_GLOB_CHARS = frozenset("*?[")


# --------------------------------------------------------------------------------------------------------- listing
def expand_shards(spec: str | os.PathLike | Sequence[str | os.PathLike], split: str | None = None) -> list[str]:
    """Turn a shard specification into a list of existing ``.tar`` paths.

    Args:
        spec: one of
            - a folder: every ``*.tar`` in it, sorted (only ``{split}-*.tar`` when ``split`` is given);
            - a brace pattern ``data/train-{000000..000009}.tar`` (expanded with ``braceexpand``);
            - a glob ``data/*.tar``;
            - a comma-separated list of any of these (commas inside braces belong to the pattern);
            - a Python list/tuple of any of these.
        split: split name used to filter folders (``train`` keeps ``train-*.tar``); ignored for explicit patterns.

    Returns:
        The shard paths, de-duplicated, in the order the spec gives them (folders and globs sorted).

    Raises:
        DataError: nothing matched, or an explicitly named shard does not exist.
    """
    parts = _spec_parts(spec)
    shards: list[str] = []
    for part in parts:
        shards.extend(_expand_one(part, split))
    shards = list(dict.fromkeys(shards))
    if not shards:
        where = f" (split {split!r})" if split else ""
        raise DataError(f"no shards matched {describe_spec(spec)}{where}: expected a folder of .tar files, "
                        "a brace pattern like dir/train-{000000..000009}.tar, a glob, or a list")
    return shards


def describe_spec(spec: object) -> str:
    """A spec for messages: ``'dir/*.tar'`` or ``['a.tar', 'b.tar']``."""
    return repr(os.fspath(spec)) if isinstance(spec, (str, os.PathLike)) else repr([os.fspath(s) for s in spec])


def _spec_parts(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Split a spec into single patterns: list items, then top-level commas (not those inside ``{...}``)."""
    if isinstance(spec, (str, os.PathLike)):
        items = [os.fspath(spec)]
    else:
        items = [os.fspath(s) for s in spec]
    parts: list[str] = []
    for item in items:
        parts.extend(p.strip() for p in _split_top_level_commas(item) if p.strip())
    return parts


def _split_top_level_commas(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char == "{") - (char == "}")
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _expand_one(pattern: str, split: str | None) -> list[str]:
    pattern = os.path.expanduser(pattern)
    if os.path.isdir(pattern):
        name = f"{split}-*.tar" if split else "*.tar"
        return sorted(glob.glob(os.path.join(glob.escape(pattern), name)))
    if "{" in pattern:
        names = _braceexpand(pattern)
    else:
        names = [pattern]
    found: list[str] = []
    for name in names:
        if _GLOB_CHARS & set(name):
            found.extend(sorted(glob.glob(name)))
        elif os.path.isfile(name):
            found.append(name)
        else:
            raise DataError(f"shard not found: {name!r} (from {pattern!r})")
    return found


def _braceexpand(pattern: str) -> list[str]:
    try:
        from braceexpand import braceexpand
    except ImportError:  # pragma: no cover - braceexpand comes with webdataset
        return _simple_braceexpand(pattern)
    return list(braceexpand(pattern))


def _simple_braceexpand(pattern: str) -> list[str]:
    """Fallback for ``{a..b}`` (zero padding kept) and ``{x,y}`` groups, no nesting."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[: match.start()], match.group(1), pattern[match.end():]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        lo, hi = numeric.groups()
        width = len(lo) if lo.startswith("0") else 0
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        options = body.split(",")
    return [name for option in options for name in _simple_braceexpand(head + option + tail)]


# --------------------------------------------------------------------------------------------------------- reading
def split_key(member_name: str) -> tuple[str, str] | None:
    """``"a/b/0001.seg.png"`` -> ``("a/b/0001", "seg.png")`` (webdataset's rule); ``None`` for names without a dot."""
    match = _KEY_EXT.match(member_name)
    return None if match is None else (match.group(1), match.group(2).lower())


def _skip_member(name: str) -> bool:
    """webdataset skips ``__meta__``-style members at the top level and in any ``__x__/`` folder."""
    return re.match(r"__[^/]*__($|/)", name) is not None


def iter_raw_samples(path: str, on_error: Callable[[str, Exception], None] | None = None) -> Iterator[RawSample]:
    """Group a shard's members into raw samples (see the module docstring), streaming (constant memory).

    A member whose extension repeats inside one key starts a new sample. A shard that is unreadable or truncated
    ends early: the samples completed so far are kept, the sample whose member failed is dropped, and ``on_error``
    (if given) is called with the path and the exception instead of raising.

    Yields:
        ``{"__key__": key, "__url__": path, ext: bytes, ...}``.
    """
    current: RawSample | None = None
    try:
        with open(path, "rb") as fileobj, tarfile.open(fileobj=fileobj, mode="r|*") as stream:
            for info in stream:
                parts = split_key(info.name) if info.isreg() and not _skip_member(info.name) else None
                if parts is not None:
                    key, ext = parts
                    if current is not None and (key != current["__key__"] or ext in current):
                        yield current  # complete: the next member belongs to another sample
                        current = None
                    if current is None:
                        current = {"__key__": key, "__url__": path}
                    handle = stream.extractfile(info)
                    current[ext] = handle.read() if handle is not None else b""
                stream.members = []  # stream mode would otherwise keep every TarInfo
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        if on_error is None:
            raise
        on_error(path, exc)
        return
    if current is not None:
        yield current


def shard_name(out_dir: str | os.PathLike, split: str, index: int) -> str:
    """``{out_dir}/{split}-{index:06d}.tar``: the names :class:`mmgen.data.writer.ShardWriter` writes."""
    return str(Path(out_dir) / f"{split}-{index:06d}.tar")

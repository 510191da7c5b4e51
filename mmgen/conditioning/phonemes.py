"""Text → phoneme (or character) symbol ids for text-to-speech.

Two kinds of text front end, chosen per model and saved with it:

* ``"phonemes"``: IPA from ``espeak-ng -q --ipa -v VOICE`` (clause lines joined by a space, exactly as
  :mod:`mmgen.data.speech` writes the ``phonemes`` field of its shards), cached per ``(text, language)``;
* ``"characters"``: the lower-cased text itself, the fallback when espeak-ng is not installed.

A :class:`SymbolVocabulary` (one symbol per Unicode character, id 0 = padding) is built from the training data and
stored in the model's config, so a checkpoint always reads text the way it was trained. Text with characters the
front end cannot speak, or symbols the vocabulary has never seen, is refused with an
:class:`~mmgen.errors.InvalidArgumentError` that names them.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch import Tensor

from mmgen.errors import InvalidArgumentError

TextKind = Literal["phonemes", "characters"]
TEXT_KINDS = ("phonemes", "characters")
PAD_ID = 0
logger = logging.getLogger(__name__)
_PUNCTUATION = set(" \t\n.,;:!?'\"-()&%$/+*=#@’‘“”–—…")


def espeak_available() -> bool:
    """True when the ``espeak-ng`` program is on the PATH."""
    return shutil.which("espeak-ng") is not None


def default_text_kind() -> TextKind:
    """``"phonemes"`` when espeak-ng is installed, else the ``"characters"`` fallback."""
    return "phonemes" if espeak_available() else "characters"


def unsupported_characters(text: str) -> list[str]:
    """The distinct characters of ``text`` a speech front end cannot read (not Latin letters, digits, punctuation)."""
    bad = []
    for char in dict.fromkeys(text):
        if char in _PUNCTUATION or (char.isdigit() and char.isascii()):
            continue
        if char.isalpha() and unicodedata.name(char, "").startswith("LATIN"):
            continue
        bad.append(char)
    return bad


def check_text(text: str, argument: str = "text") -> str:
    """``text`` stripped; raise naming ``argument`` when it is empty or has unsupported characters."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError(argument, "a non-empty sentence", text)
    bad = unsupported_characters(text)
    if bad:
        shown = ", ".join(repr(c) for c in bad[:8]) + (f" (+{len(bad) - 8} more)" if len(bad) > 8 else "")
        raise InvalidArgumentError(argument, "Latin letters, digits, spaces and punctuation only",
                                   f"unsupported character(s) {shown}")
    return " ".join(text.split())


def espeak_language(voice: str | None) -> str:
    """The language part of an espeak-ng voice (``en-gb+f3`` → ``en-gb``): variants do not change phonemes."""
    return (voice or "en-us").split("+", 1)[0]


@functools.lru_cache(maxsize=65536)
def _espeak_ipa(text: str, language: str) -> str:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise InvalidArgumentError("text front end", "espeak-ng installed (apt-get install espeak-ng) for a "
                                   "phoneme model", "espeak-ng not found")
    result = subprocess.run([binary, "-q", "--ipa", "-v", language, text], capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0:
        raise InvalidArgumentError("voice", "an espeak-ng voice (espeak-ng --voices)",
                                   f"{language} ({result.stderr.strip() or result.returncode})")
    return " ".join(line.strip() for line in result.stdout.splitlines() if line.strip())


def phonemize(text: str, voice: str | None = "en-us") -> str:
    """IPA phonemes of ``text`` from espeak-ng (cached), e.g. ``"Hello there." → "həlˈoʊ ðˈɛɹ"``."""
    return _espeak_ipa(check_text(text), espeak_language(voice))


def text_to_symbols(text: str, kind: TextKind, voice: str | None = "en-us") -> str:
    """The symbol string a model of ``kind`` reads: IPA phonemes, or the normalised lower-case characters."""
    if kind == "phonemes":
        return phonemize(text, voice)
    if kind == "characters":
        return check_text(text).lower()
    raise InvalidArgumentError("text_kind", f"one of {TEXT_KINDS}", kind)


class SymbolVocabulary:
    """Symbols (single characters) ↔ ids; id 0 is padding, symbol ``i`` of ``symbols`` has id ``i + 1``."""

    def __init__(self, symbols: Sequence[str]):
        symbols = tuple(symbols)
        if len(set(symbols)) != len(symbols) or any(len(s) != 1 for s in symbols):
            raise InvalidArgumentError("symbols", "distinct single characters", symbols)
        self.symbols = symbols
        self._ids = {s: i + 1 for i, s in enumerate(symbols)}

    @classmethod
    def build(cls, texts: Iterable[str]) -> SymbolVocabulary:
        """The sorted set of characters of ``texts`` (symbol strings from :func:`text_to_symbols`)."""
        return cls(sorted({char for text in texts for char in text}))

    def __len__(self) -> int:
        """Number of ids including padding."""
        return len(self.symbols) + 1

    def encode(self, symbols: str, *, strict: bool = True) -> list[int]:
        """A symbol string → ids.

        Symbols outside the vocabulary raise an :class:`InvalidArgumentError` naming them (``strict``) or are
        dropped with a warning naming them (``strict=False``: a rare phoneme the training data never had).
        """
        unknown = [s for s in dict.fromkeys(symbols) if s not in self._ids]
        if unknown:
            shown = ", ".join(repr(s) for s in unknown)
            if strict:
                raise InvalidArgumentError("text", "symbols this model was trained on",
                                           f"unknown symbol(s) {shown} in {symbols!r}")
            logger.warning("symbol(s) %s of %r are not in the model's vocabulary and were skipped", shown, symbols)
            symbols = "".join(s for s in symbols if s in self._ids)
        if not symbols.strip():
            raise InvalidArgumentError("text", "at least one speakable symbol", symbols)
        return [self._ids[s] for s in symbols]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.symbols[i - 1] for i in ids if i != PAD_ID)

    def batch(self, symbol_strings: Sequence[str], device: torch.device | str | None = None, *,
              strict: bool = True) -> tuple[Tensor, Tensor]:
        """Encode and pad: ``(ids Long [B, L], mask Bool [B, L])`` with mask True at real symbols."""
        encoded = [self.encode(s, strict=strict) for s in symbol_strings]
        length = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), length), PAD_ID, dtype=torch.long)
        for row, values in enumerate(encoded):
            ids[row, : len(values)] = torch.tensor(values)
        ids = ids.to(device) if device is not None else ids
        return ids, ids != PAD_ID


__all__ = ["PAD_ID", "TEXT_KINDS", "SymbolVocabulary", "TextKind", "check_text", "default_text_kind",
           "espeak_available", "espeak_language", "phonemize", "text_to_symbols", "unsupported_characters"]

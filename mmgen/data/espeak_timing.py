"""espeak-ng through its C library: the waveform *and* when each phoneme starts, for per-symbol durations.

The ``espeak-ng`` program cannot report phoneme timings; its library can (``espeakEVENT_PHONEME`` events carry the
sample at which each phoneme starts). :func:`synthesize` speaks a sentence through ``libespeak-ng.so.1`` (loaded
with ctypes; it ships with the ``espeak-ng`` package) and returns the waveform and those events, and
:func:`symbol_durations` spreads the event timings over the characters of the IPA string that
:func:`mmgen.conditioning.phonemes.phonemize` gives for the same text: every character of that string (the
symbols a TTS model reads) gets a duration in seconds, stress marks and word gaps get 0 (or the pause espeak-ng
makes there), and the durations sum to the length of the audio. A TTS model trained with them learns where each
phoneme is instead of discovering the alignment by itself.

The library keeps global state, so calls are serialised by a lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmgen.errors import DataError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAMETER_RATE = 1
_ENDPAUSE = 0x1000
_LOCK = threading.Lock()

# Characters of espeak-ng's IPA output that are not sounds of their own: stress marks, word/clause gaps, ties.
MARKS = frozenset("ˈˌ \u0361\u035c-_|")


class _VoiceSelector(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


class _NumberOrName(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _NumberOrName)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class PhonemeEvent:
    """One phoneme as espeak-ng spoke it: its IPA name (``""`` for a pause) and its first sample."""

    name: str
    sample: int


@dataclass
class Synthesis:
    """``wav``: float32 ``[T]`` in [-1, 1] at ``sample_rate``; ``events``: the phonemes in order."""

    wav: np.ndarray
    sample_rate: int
    events: list[PhonemeEvent]


class _Espeak:
    """The loaded library and its synthesis callback (one per process)."""

    def __init__(self) -> None:
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as exc:
            raise DataError(f"the espeak-ng library could not be loaded ({exc}): apt-get install espeak-ng") from None
        self.sample_rate = int(self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                                          _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA))
        if self.sample_rate <= 0:
            raise DataError("the espeak-ng library failed to initialise (is espeak-ng-data installed?)")
        self.chunks: list[np.ndarray] = []
        self.events: list[PhonemeEvent] = []
        self.callback = _CALLBACK(self._on_audio)  # keep a reference: the library calls it
        self.lib.espeak_SetSynthCallback(self.callback)

    def _on_audio(self, wav: ctypes.Array, count: int, events: ctypes.Array) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self.events.append(PhonemeEvent(name, int(event.sample)))
            index += 1
        return 0

    def speak(self, text: str, voice: str, rate: int) -> Synthesis:
        self.select_voice(voice)
        self.lib.espeak_SetParameter(_PARAMETER_RATE, int(rate), 0)
        self.chunks, self.events = [], []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _ENDPAUSE, None, None)
        self.lib.espeak_Synchronize()
        if status != 0 or not self.chunks:
            raise DataError(f"espeak-ng could not speak {text[:40]!r} (status {status})")
        wav = np.concatenate(self.chunks).astype(np.float32) / 32768.0
        return Synthesis(wav, self.sample_rate, self.events)

    def select_voice(self, voice: str) -> None:
        """As the ``espeak-ng -v`` program does: a voice file name, else a language (both with ``+variant``)."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) == 0:
            return
        selector = _VoiceSelector(languages=voice.encode())
        if self.lib.espeak_SetVoiceByProperties(ctypes.byref(selector)) != 0:
            raise DataError(f"espeak-ng has no voice {voice!r} (espeak-ng --voices)")


@functools.lru_cache(maxsize=1)
def _engine() -> _Espeak:
    return _Espeak()


def synthesize(text: str, voice: str = "en-us", rate: int = 160) -> Synthesis:
    """Speak ``text`` with espeak-ng's library: the waveform (22.05 kHz) and the phoneme start events."""
    with _LOCK:
        return _engine().speak(text, voice, rate)


def symbol_durations(ipa: str, events: Sequence[PhonemeEvent], num_samples: int, sample_rate: int) -> list[float]:
    """Seconds per character of ``ipa`` from espeak-ng phoneme events (they sum to ``num_samples / sample_rate``).

    Each event's phoneme (``"oʊ"``, ``"t"``) is found in ``ipa`` in order, skipping only :data:`MARKS`; its time
    (until the next event) is shared equally by its characters. The silence before the first phoneme goes to
    the first one, a final pause to the last one, a pause between words to the gap (the space) before the next
    word. A phoneme espeak-ng merged into the one before it (it starts where the next begins, as a post-vocalic
    l or r) shares that one's time. Characters no event covers (stress marks, gaps without a pause) get 0.

    Raises:
        DataError: an event's phoneme does not occur where expected (the two phoneme strings disagree).
    """
    starts = [min(max(e.sample, 0), num_samples) for e in events] + [num_samples]
    lengths = [(starts[i + 1] - starts[i]) / sample_rate for i in range(len(events))]
    for index in range(1, len(events)):  # a merged phoneme (post-vocalic l/r) shares its vowel's time
        if events[index].name and events[index - 1].name and lengths[index] == 0:
            lengths[index] = lengths[index - 1] = lengths[index - 1] / 2
    seconds = [0.0] * len(ipa)
    position, last, pending = 0, None, starts[0] / sample_rate
    for event, length in zip(events, lengths):
        if not event.name:  # a pause: placed once the next phoneme (and the gap before it) is known
            pending += length
            continue
        begin = position
        while begin < len(ipa) and not ipa.startswith(event.name, begin):
            if ipa[begin] not in MARKS:
                raise DataError(f"espeak-ng phoneme {event.name!r} not found at {ipa[begin:begin + 12]!r} of {ipa!r}")
            begin += 1
        if begin >= len(ipa):
            raise DataError(f"espeak-ng phoneme {event.name!r} not found after position {position} of {ipa!r}")
        if pending:
            spaces = [i for i in range(position, begin) if ipa[i] == " "]
            target = spaces[-1] if spaces and last is not None else begin if last is None else last
            seconds[target] += pending
            pending = 0.0
        for offset in range(len(event.name)):
            seconds[begin + offset] += length / len(event.name)
        position, last = begin + len(event.name), begin + len(event.name) - 1
    if pending:
        seconds[last if last is not None else 0] += pending
    return seconds


__all__ = ["MARKS", "PhonemeEvent", "Synthesis", "symbol_durations", "synthesize"]

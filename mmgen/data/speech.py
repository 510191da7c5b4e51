"""A real speech corpus spoken by espeak-ng: thousands of distinct sentences, several voices and speaking rates.

Sentences are built from word lists and templates (:func:`generate_sentences`, seeded, all distinct); each one is
spoken by a voice and rate drawn per sample, resampled to the dataset's rate (16 kHz mono by default) and written
as one shard sample::

    {key}.wav   16-bit PCM (or .flac)
    {key}.txt   the sentence
    {key}.json  {"text", "phonemes" (espeak-ng --ipa), "durations" (seconds per phoneme symbol), "voice", "rate",
                 "sample_rate", "seconds"}

The ``holdout`` split uses sentences that never occur in ``train`` (held-out *sentences*, not just recordings).
espeak-ng is a system package (``apt-get install espeak-ng``; the Makefile installs it when missing); the audio and
the per-symbol durations come from its library (:mod:`mmgen.data.espeak_timing`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from mmgen.data.audio_io import encode_audio, resample
from mmgen.data.writer import ShardWriter
from mmgen.errors import DataError, InvalidArgumentError

SPEECH_SOURCE = "espeak-ng"
DEFAULT_VOICES = ("en-us", "en-us+f3", "en-us+m3", "en-gb", "en-gb+f2", "en-gb-x-rp+m5", "en-gb-scotland",
                  "en-029+f4", "en-us-nyc+m2")
"""espeak-ng voices (language + optional ``+variant``: ``f*`` female, ``m*`` male) used by default."""

# ------------------------------------------------------------------------------------------------ vocabulary
_NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Iris", "Jack", "Kate", "Leo", "Maria",
          "Nora", "Oscar", "Paula", "Quinn", "Rosa", "Sam", "Tina", "Victor", "Wendy", "my sister", "our teacher",
          "the doctor", "the farmer", "a young pilot", "the old captain", "her neighbour", "the baker")
_ADJECTIVES = ("red", "small", "heavy", "quiet", "bright", "broken", "golden", "wooden", "strange", "famous",
               "tiny", "empty", "warm", "frozen", "yellow", "ancient", "clever", "noisy", "gentle", "purple",
               "narrow", "shiny", "dusty", "fresh", "lonely", "busy", "green", "silver", "soft", "crowded")
_NOUNS = ("book", "river", "garden", "bicycle", "letter", "window", "mountain", "kitten", "lamp", "piano", "boat",
          "bridge", "basket", "candle", "camera", "jacket", "village", "forest", "violin", "ladder", "painting",
          "umbrella", "island", "kettle", "tower", "wagon", "mirror", "feather", "trumpet", "blanket", "castle",
          "orange", "pencil", "rocket", "station", "tractor", "teapot", "map", "clock", "shovel")
_VERBS = ("found", "painted", "carried", "opened", "repaired", "sold", "watched", "cleaned", "borrowed", "hid",
          "visited", "described", "counted", "dropped", "measured", "photographed", "wrapped", "delivered",
          "noticed", "remembered", "pushed", "built", "lost", "bought", "moved", "checked")
_PLACES = ("in the kitchen", "near the station", "behind the school", "at the market", "on the hill",
           "by the river", "under the bridge", "in the library", "at the harbour", "in the garden",
           "on the roof", "across the street", "in the museum", "at the airport", "beside the lake",
           "in a small village", "on the beach", "inside the barn", "at the corner shop", "in the city centre")
_TIMES = ("yesterday", "this morning", "last winter", "on Monday", "at noon", "every evening", "before dinner",
          "after the storm", "in the spring", "on Friday night", "three days ago", "at midnight", "last summer",
          "early today", "during the holidays", "on a rainy afternoon")
_ADVERBS = ("slowly", "carefully", "quickly", "happily", "quietly", "suddenly", "proudly", "nervously", "gladly",
            "patiently", "secretly", "loudly")
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty", "forty")
_TEMPLATES = (
    "{name} {verb} the {adj} {noun} {place}.",
    "{Time}, {name} {adverb} {verb} a {adj} {noun}.",
    "Did {name} really see the {adj} {noun} {place}?",
    "There were {number} {adj} {noun}s {place} {time}.",
    "{name} {verb} the {noun} and {verb2} the {adj} {noun2}.",
    "Please put the {adj} {noun} {place} before {time2}.",
    "I think {name} {verb} my {noun} {time}.",
    "The {adj} {noun} was {adverb} {verb} by {name}.",
    "Why is the {noun} so {adj} {time}?",
    "{name} said that the {noun} {place} looks {adj}.",
    "We counted {number} {noun}s and one {adj} {noun2}.",
    "{Time}, the {adj} {noun} near the {noun2} was {verb} again.",
)
_SLOTS = {"name": _NAMES, "adj": _ADJECTIVES, "noun": _NOUNS, "noun2": _NOUNS, "verb": _VERBS, "verb2": _VERBS,
          "place": _PLACES, "time": _TIMES, "time2": _TIMES, "adverb": _ADVERBS, "number": _NUMBERS}


def _fill(template: str, rng: np.random.Generator) -> str:
    words = {slot: options[rng.integers(len(options))] for slot, options in _SLOTS.items()}
    words["Time"] = words["time"][0].upper() + words["time"][1:]
    sentence = template.format(**words)
    return sentence[0].upper() + sentence[1:]


def generate_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct English sentences from templates and word lists (seeded; order is random).

    The word lists allow millions of combinations, so any practical ``count`` is reached quickly.
    """
    if count < 0:
        raise InvalidArgumentError("count", "an integer >= 0", count)
    rng = np.random.default_rng(seed)
    seen: dict[str, None] = {}
    attempts = 0
    while len(seen) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise DataError(f"could not generate {count} distinct sentences")
        seen.setdefault(_fill(_TEMPLATES[rng.integers(len(_TEMPLATES))], rng), None)
    return list(seen)


# -------------------------------------------------------------------------------------------------- espeak-ng
def espeak_binary() -> str:
    """Path of the ``espeak-ng`` program; :class:`DataError` with the install command when it is missing."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise DataError("espeak-ng is not installed (needed for speech data): apt-get install espeak-ng "
                        "(or run `make setup`, which installs it when it can)")
    return path


@dataclass
class Utterance:
    """One spoken sentence: ``wav`` float32 [T] at ``sample_rate``, its text, IPA phonemes, voice and rate.

    ``durations``: seconds per character of ``phonemes`` (espeak-ng's own phoneme timings; they sum to the length
    of ``wav``), or None when unknown.
    """

    text: str
    phonemes: str
    voice: str
    rate: int
    wav: torch.Tensor
    sample_rate: int
    durations: list[float] | None = None

    @property
    def seconds(self) -> float:
        return self.wav.shape[-1] / self.sample_rate

    def meta(self) -> dict[str, object]:
        meta: dict[str, object] = {"text": self.text, "phonemes": self.phonemes, "voice": self.voice,
                                   "rate": self.rate, "sample_rate": self.sample_rate,
                                   "seconds": round(self.seconds, 4)}
        if self.durations is not None:
            meta["durations"] = [round(d, 5) for d in self.durations]
        return meta


def speak(text: str, voice: str = "en-us", rate: int = 160, sample_rate: int | None = 16000) -> Utterance:
    """Speak ``text`` with espeak-ng: the waveform, its IPA phonemes and how long each phoneme symbol lasts.

    The audio and the phoneme timings come from espeak-ng's library (:mod:`mmgen.data.espeak_timing`), the IPA
    string from :func:`mmgen.conditioning.phonemes.phonemize`, exactly what a TTS model reads at inference.

    Args:
        voice: an espeak-ng voice, optionally with a variant (``en-gb+f3``).
        rate: words per minute (espeak-ng ``-s``).
        sample_rate: resample to this rate (``None``: keep espeak-ng's 22050 Hz).
    """
    from mmgen.conditioning.phonemes import phonemize
    from mmgen.data.espeak_timing import symbol_durations, synthesize

    espeak_binary()
    phonemes = phonemize(text, voice)
    spoken = synthesize(text, voice, int(rate))
    durations = symbol_durations(phonemes, spoken.events, len(spoken.wav), spoken.sample_rate)
    wav = torch.from_numpy(spoken.wav)
    if sample_rate is not None:
        wav = resample(wav, spoken.sample_rate, sample_rate)
    return Utterance(text, phonemes, voice, int(rate), wav.clamp(-1, 1), sample_rate or spoken.sample_rate,
                     durations)


def speak_many(jobs: Sequence[tuple[str, str, int]], sample_rate: int | None = 16000,
               workers: int | None = None) -> Iterator[Utterance]:
    """Speak ``(text, voice, rate)`` jobs; yields utterances in job order (phonemizing runs in parallel threads,
    synthesis is serialised by espeak-ng's library)."""
    workers = workers or min(8, max(2, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(lambda job: speak(job[0], job[1], job[2], sample_rate), jobs)


# ----------------------------------------------------------------------------------------------------- dataset
@dataclass
class SpeechSpec:
    """What :func:`write_speech` writes: sentence counts, voices, rate range, sample rate, file format."""

    num_train: int = 2000
    num_holdout: int = 100
    voices: tuple[str, ...] = DEFAULT_VOICES
    rate_min: int = 130
    rate_max: int = 190
    sample_rate: int = 16000
    fmt: str = "wav"
    seed: int = 0

    def check(self) -> None:
        if self.num_train <= 0:
            raise InvalidArgumentError("--num", "a positive integer", self.num_train)
        if self.num_holdout < 0:
            raise InvalidArgumentError("--holdout", "an integer >= 0", self.num_holdout)
        if not self.voices:
            raise InvalidArgumentError("--voices", "at least one espeak-ng voice", self.voices)
        if not 80 <= self.rate_min <= self.rate_max <= 450:
            raise InvalidArgumentError("--rates", "80 <= min <= max <= 450 words per minute",
                                       f"{self.rate_min}-{self.rate_max}")
        if self.fmt not in ("wav", "flac"):
            raise InvalidArgumentError("--format", "wav or flac", self.fmt)
        if not 4000 <= self.sample_rate <= 96000:
            raise InvalidArgumentError("--sample-rate", "a rate in [4000, 96000] Hz", self.sample_rate)


def speech_jobs(spec: SpeechSpec) -> dict[str, list[tuple[str, str, int]]]:
    """``{"train": [(text, voice, rate), ...], "holdout": [...]}``: held-out sentences never occur in train."""
    sentences = generate_sentences(spec.num_train + spec.num_holdout, spec.seed)
    rng = np.random.default_rng(spec.seed + 1)
    voices = rng.integers(len(spec.voices), size=len(sentences))
    rates = rng.integers(spec.rate_min, spec.rate_max + 1, size=len(sentences))
    jobs = [(text, spec.voices[v], int(r)) for text, v, r in zip(sentences, voices, rates)]
    return {"train": jobs[: spec.num_train], "holdout": jobs[spec.num_train:]}


def write_speech(out_dir: str | os.PathLike, spec: SpeechSpec, samples_per_shard: int = 500,
                 progress: Callable[[Iterable, int, str], Iterable] | None = None,
                 workers: int | None = None) -> dict[str, int]:
    """Speak the corpus of ``spec`` and write ``train-*.tar`` / ``holdout-*.tar``; returns samples per split."""
    spec.check()
    espeak_binary()
    counts: dict[str, int] = {}
    extra = {"sample_rate": spec.sample_rate, "voices": list(spec.voices), "rates": [spec.rate_min, spec.rate_max]}
    for split, jobs in speech_jobs(spec).items():
        if not jobs:
            continue
        rows: Iterable[Utterance] = speak_many(jobs, spec.sample_rate, workers)
        if progress is not None:
            rows = progress(rows, len(jobs), split)
        with ShardWriter(out_dir, split, samples_per_shard, source=SPEECH_SOURCE, extra=extra) as writer:
            for utterance in rows:
                writer.write(None, {spec.fmt: encode_audio(utterance.wav, utterance.sample_rate, spec.fmt),
                                    "txt": utterance.text, "json": utterance.meta()})
        counts[split] = writer.count
    return counts


__all__ = ["DEFAULT_VOICES", "SPEECH_SOURCE", "SpeechSpec", "Utterance", "espeak_binary", "generate_sentences",
           "speak", "speak_many", "speech_jobs", "write_speech"]

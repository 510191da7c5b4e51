"""Per-symbol durations from espeak-ng's phoneme events (mmgen.data.espeak_timing)."""

from __future__ import annotations

import shutil

import pytest

from mmgen.data.espeak_timing import PhonemeEvent, symbol_durations, synthesize
from mmgen.errors import DataError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_events_spread_over_the_ipa_symbols():
    ipa = "hˈaɪ ðˈɛɹ"
    events = [PhonemeEvent("h", 100), PhonemeEvent("aɪ", 200), PhonemeEvent("", 400), PhonemeEvent("ð", 600),
              PhonemeEvent("ɛɹ", 700)]
    seconds = symbol_durations(ipa, events, num_samples=1000, sample_rate=1000)
    assert seconds == pytest.approx([0.2, 0.0, 0.1, 0.1, 0.2, 0.1, 0.0, 0.15, 0.15])
    assert sum(seconds) == pytest.approx(1.0)                    # leading silence → "h", pause → the word gap


def test_a_phoneme_missing_from_the_ipa_is_an_error():
    with pytest.raises(DataError, match="'k' not found"):
        symbol_durations("hˈaɪ", [PhonemeEvent("h", 0), PhonemeEvent("k", 10)], 100, 1000)


@needs_espeak
def test_espeak_durations_cover_every_sentence_and_sum_to_the_audio():
    from mmgen.conditioning.phonemes import phonemize
    from mmgen.data.speech import DEFAULT_VOICES, generate_sentences

    for index, text in enumerate(generate_sentences(30, seed=11)):
        voice = DEFAULT_VOICES[index % len(DEFAULT_VOICES)]
        spoken = synthesize(text, voice, 150 + index)
        ipa = phonemize(text, voice)
        seconds = symbol_durations(ipa, spoken.events, len(spoken.wav), spoken.sample_rate)
        assert sum(seconds) == pytest.approx(len(spoken.wav) / spoken.sample_rate)
        sounds = [s for char, s in zip(ipa, seconds) if char not in "ˈˌ "]
        assert min(sounds) > 0.005 and max(sounds) < 1.0             # every phoneme symbol lasts a while


@needs_espeak
def test_slower_speech_has_longer_phonemes_and_unknown_voices_fail():
    fast, slow = synthesize("The kettle was quiet.", "en-us", 220), synthesize("The kettle was quiet.", "en-us", 120)
    assert len(slow.wav) > 1.4 * len(fast.wav) and [e.name for e in slow.events] == [e.name for e in fast.events]
    with pytest.raises(DataError, match="no voice"):
        synthesize("hello", "xx-nowhere")


def test_a_merged_phoneme_shares_the_time_of_the_one_before():
    events = [PhonemeEvent("ɪ", 0), PhonemeEvent("l", 40), PhonemeEvent("v", 40)]
    assert symbol_durations("ɪlv", events, 100, 1000) == pytest.approx([0.02, 0.02, 0.06])

"""Is generated speech intelligible? Its phoneme error rate (PER) as read by the phoneme judge.

    judge = load_phoneme_judge()                                       # assets/phoneme-judge
    result = phoneme_error_rate(judge, wavs, 16000, phoneme_strings)   # wavs: list of [T] / [C, T] tensors
    result.per                                                         # total edits / total reference symbols

References are espeak-ng IPA strings (the ``phonemes`` field of ``mmgen data speech`` shards, or
:func:`mmgen.conditioning.phonemes.phonemize` of the text that was spoken); stress marks, word gaps and the other
non-sound marks are dropped from them exactly as from the judge's training labels
(:func:`mmgen.models.phoneme_judge.sound_symbols`). The judge's transcript is its greedy CTC path. An item's edits
are the Levenshtein distance (substitutions, insertions, deletions, one each) between the two symbol strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmgen.errors import InvalidArgumentError
from mmgen.models.phoneme_judge import PhonemeJudge, sound_symbols


@dataclass
class PERResult:
    """Phoneme error rates of a set of utterances.

    Attributes:
        per: total edits / total reference symbols (the corpus PER; long utterances weigh more).
        item_per: edits / reference length, per item.
        edits: Levenshtein distance per item.
        reference_lengths: reference symbols per item.
        hypotheses, references: the judge's and the reference symbol strings (marks dropped).
    """

    per: float
    item_per: list[float]
    edits: list[int]
    reference_lengths: list[int]
    hypotheses: list[str] = field(repr=False)
    references: list[str] = field(repr=False)

    @property
    def mean_item_per(self) -> float:
        """The unweighted mean of ``item_per``."""
        return sum(self.item_per) / len(self.item_per) if self.item_per else 0.0


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two symbol sequences (each substitution, insertion, deletion costs 1)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def score_transcripts(hypotheses: Sequence[str], phoneme_strings: Sequence[str]) -> PERResult:
    """PER of judged symbol strings against reference IPA strings (marks dropped from both).

    Raises:
        InvalidArgumentError: the counts differ, or a reference has no sound symbol.
    """
    if len(hypotheses) != len(phoneme_strings):
        raise InvalidArgumentError("phoneme_strings", f"one reference per utterance ({len(hypotheses)})",
                                   len(phoneme_strings))
    references = [sound_symbols(str(text)) for text in phoneme_strings]
    empty = [text for text, ref in zip(phoneme_strings, references) if not ref]
    if empty:
        raise InvalidArgumentError("phoneme_strings", "IPA strings with at least one sound symbol", empty[0])
    hypotheses = [sound_symbols(text) for text in hypotheses]
    edits = [edit_distance(ref, hyp) for ref, hyp in zip(references, hypotheses)]
    lengths = [len(ref) for ref in references]
    return PERResult(per=sum(edits) / max(1, sum(lengths)), item_per=[e / n for e, n in zip(edits, lengths)],
                     edits=edits, reference_lengths=lengths, hypotheses=hypotheses, references=references)


def phoneme_error_rate(judge: PhonemeJudge, wavs: torch.Tensor | Sequence[torch.Tensor], sample_rate: int,
                       phoneme_strings: Sequence[str], *, batch_size: int = 16) -> PERResult:
    """Transcribe ``wavs`` (a list of [T] / [C, T] tensors or a [B, T] / [B, C, T] tensor, in [-1, 1] at
    ``sample_rate``; resampled to the judge's rate) and score them against ``phoneme_strings`` (IPA, one each).

    Raises:
        InvalidArgumentError: counts differ, a waveform is empty or badly shaped, or a reference has no sound.
    """
    count = len(wavs)
    if count != len(phoneme_strings):
        raise InvalidArgumentError("phoneme_strings", f"one reference per utterance ({count})", len(phoneme_strings))
    if count == 0:
        raise InvalidArgumentError("wavs", "at least one utterance", 0)
    return score_transcripts(judge.transcribe(wavs, sample_rate, batch_size=batch_size), phoneme_strings)


def load_phoneme_judge(path: str | Path | None = None, device: str | torch.device = "cpu") -> PhonemeJudge:
    """The shipped judge (``assets/phoneme-judge``) or the one saved at ``path`` (a ``mmgen train phoneme-judge``
    run's ``model/`` folder), in eval mode."""
    from mmgen.assets import SPEECH_JUDGE, asset_path

    return PhonemeJudge.from_pretrained(path or asset_path(SPEECH_JUDGE), device=device).eval()

"""The phoneme judge: a small CTC phoneme recognizer that reads speech, so generated speech can be scored by its
phoneme error rate (:func:`mmgen.eval.intelligibility.phoneme_error_rate`), as the shapes judge scores images.

Symbols are the *sounds* of espeak-ng's IPA strings, one per Unicode character (:func:`sound_symbols`): stress
marks, word gaps, ties and the other :data:`mmgen.data.espeak_timing.MARKS` are dropped; the length mark ``ː``
stays a symbol of its own (``"iː"`` is two symbols, so a wrong length costs one edit) and espeak-ng's ASCII ``:``
is read as ``ː``. Id 0 is the CTC blank; symbol ``i`` of ``config.symbols`` has id ``i + 1`` (the vocabulary is the
training split's, saved in the config).

Architecture: 80-bin log-mel (25 ms window, 10 ms hop at 16 kHz), normalised per utterance and mel bin → two
1D convolutions (the second with stride 2: 50 frames/s, 3-6 frames per phoneme) → pre-norm transformer blocks
(:class:`mmgen.nn.transformer.TransformerBlock`, rotary positions, padding masked) → log-probabilities over
blank + symbols.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.data.espeak_timing import MARKS
from mmgen.errors import InvalidArgumentError
from mmgen.nn.positions import axial_rope
from mmgen.nn.transformer import TransformerBlock
from mmgen.pretrained import PretrainedModel
from mmgen.registry import register_config

BLANK_ID = 0
_ALIASES = {":": "ː"}


def sound_symbols(ipa: str) -> str:
    """espeak-ng IPA → the judge's symbol string: marks dropped, ``:`` read as ``ː``
    (``"həlˈoʊ ðˈɛɹ" → "həloʊðɛɹ"``)."""
    return "".join(_ALIASES.get(char, char) for char in ipa if char not in MARKS)


@dataclass
class PhonemeJudgeConfig:
    """Architecture of :class:`PhonemeJudge`; ``symbols`` is the vocabulary (blank excluded)."""

    symbols: tuple[str, ...] = ()
    sample_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160
    dim: int = 192
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 3.0
    kernel_size: int = 5
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols) or any(len(s) != 1 for s in self.symbols):
            raise InvalidArgumentError("symbols", "distinct single characters", self.symbols)
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise InvalidArgumentError("dim", f"a multiple of num_heads={self.num_heads} with even head width",
                                       self.dim)
        if self.kernel_size % 2 == 0:
            raise InvalidArgumentError("kernel_size", "an odd number", self.kernel_size)


@dataclass
class PhonemeJudgeOutput:
    """``log_probs [B, N, V]`` (log-softmax over blank + symbols, V = len(symbols) + 1) and ``lengths [B]``:
    the valid output frames of each item (frames past it are padding)."""

    log_probs: torch.Tensor
    lengths: torch.Tensor


def ctc_greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[list[int]]:
    """Best-path CTC decoding: per item, argmax ids of the first ``lengths[b]`` frames of ``log_probs [B, N, V]``
    with repeats collapsed, then blanks (id 0) dropped (``a a - a b b`` → ``a a b``)."""
    best = log_probs.argmax(-1).cpu()
    lengths = torch.full((best.shape[0],), best.shape[1]) if lengths is None else lengths.cpu()
    decoded = []
    for row, length in zip(best, lengths.tolist()):
        ids = torch.unique_consecutive(row[: int(length)])
        decoded.append([int(i) for i in ids if int(i) != BLANK_ID])
    return decoded


def _frames(lengths: torch.Tensor, hop: int) -> torch.Tensor:
    """Samples [B] → valid STFT frames [B] (``center=True``: ``T // hop + 1``)."""
    return torch.div(lengths, hop, rounding_mode="floor") + 1


class PhonemeJudge(PretrainedModel):
    """Log-mel → conv front end (stride 2) → transformer blocks → CTC log-probs (see the module docstring)."""

    config_class = PhonemeJudgeConfig
    model_type = "phoneme_judge"

    def __init__(self, config: PhonemeJudgeConfig):
        super().__init__(config)
        c, pad = config, config.kernel_size // 2
        self.conv_in = nn.Conv1d(c.n_mels, c.dim, c.kernel_size, padding=pad)
        self.conv_down = nn.Conv1d(c.dim, c.dim, c.kernel_size, stride=2, padding=pad)
        self.blocks = nn.ModuleList(TransformerBlock(c.dim, c.num_heads, c.mlp_ratio, dropout=c.dropout)
                                    for _ in range(c.depth))
        self.final_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, len(c.symbols) + 1)

    @property
    def vocab_size(self) -> int:
        """Output classes: blank + symbols."""
        return len(self.config.symbols) + 1

    def features(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """wav [B, T] at ``config.sample_rate`` (samples past ``lengths [B]`` are padding) → (normalised log-mel
        ``[B, F, n_mels]``, zero past each item's frames; valid frames ``[B]``).

        Each item's spectrogram is computed from its own samples only, so an utterance reads the same alone or
        padded in a batch (the rest of the network masks padding too)."""
        c = self.config
        if wav.ndim != 2:
            raise InvalidArgumentError("wav", "a tensor [B, T]", tuple(wav.shape))
        sizes = [wav.shape[1]] * wav.shape[0] if lengths is None else [min(int(n), wav.shape[1]) for n in lengths]
        with torch.autocast(wav.device.type, enabled=False):
            mels = [self._log_mel(wav[row, :size]) for row, size in enumerate(sizes)]
        frames = torch.tensor([min(size // c.hop_length + 1, m.shape[0]) for size, m in zip(sizes, mels)],
                              device=wav.device)
        mel = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True)                      # [B, F, n_mels]
        valid = (torch.arange(mel.shape[1], device=mel.device)[None] < frames[:, None])[..., None]  # [B, F, 1]
        count = frames.clamp(min=1)[:, None, None].float()
        mean = (mel * valid).sum(1, keepdim=True) / count
        std = (((mel - mean) * valid).square().sum(1, keepdim=True) / count).sqrt().clamp_min(1e-3)
        return ((mel - mean) / std) * valid, frames

    def _log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [T] → natural-log mel [T // hop + 1, n_mels] (very short clips zero-padded to one window)."""
        from mmgen.eval.audio_metrics import log_mel

        c = self.config
        if wav.shape[0] <= c.n_fft // 2:  # too short for the STFT's reflect padding
            wav = F.pad(wav, (0, c.n_fft - wav.shape[0]))
        return log_mel(wav.float()[None, None], c.sample_rate, c.n_fft, c.hop_length, c.n_mels)[0].T

    def forward_features(self, features: torch.Tensor, frames: torch.Tensor) -> PhonemeJudgeOutput:
        """features [B, F, n_mels] (from :meth:`features`), valid frames [B] → :class:`PhonemeJudgeOutput` with
        ``N = ceil(F / 2)`` frames."""
        weight = self.conv_in.weight
        x = F.gelu(self.conv_in(features.to(weight.dtype).transpose(1, 2)))        # [B, D, F]
        out_frames = torch.div(frames + 1, 2, rounding_mode="floor")                # ceil(frames / 2)
        x = x * (torch.arange(x.shape[-1], device=x.device)[None] < frames[:, None])[:, None]
        x = F.gelu(self.conv_down(x)).transpose(1, 2)                                # [B, N, D]
        mask = torch.arange(x.shape[1], device=x.device)[None] < out_frames[:, None]  # [B, N]
        x = x * mask[..., None]
        rope = axial_rope([x.shape[1]], self.config.dim // self.config.num_heads, device=x.device)
        for block in self.blocks:
            x = block(x, key_padding_mask=mask, rope=rope)
        logits = self.head(self.final_norm(x)).float()
        return PhonemeJudgeOutput(logits.log_softmax(-1), out_frames)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> PhonemeJudgeOutput:
        """wav [B, T] in [-1, 1] at ``config.sample_rate``; lengths [B] in samples (None: all T) →
        :class:`PhonemeJudgeOutput` (``log_probs [B, N, V]``, N ≈ T / (2 · hop_length))."""
        return self.forward_features(*self.features(wav, lengths))

    def ids_to_symbols(self, ids: Sequence[int]) -> str:
        """Ids (no blanks) → symbol string."""
        return "".join(self.config.symbols[i - 1] for i in ids if i != BLANK_ID)

    @torch.no_grad()
    def transcribe(self, wavs: torch.Tensor | Sequence[torch.Tensor], sample_rate: int, *,
                   batch_size: int = 16) -> list[str]:
        """Greedy CTC transcription: wavs (a list of [T] / [C, T] tensors, or [B, T] / [B, C, T]) in [-1, 1] at
        ``sample_rate`` (resampled to ``config.sample_rate``; channels averaged) → one symbol string per item."""
        from mmgen.data.audio_io import resample

        items = _as_mono_list(wavs)
        param = next(self.parameters())
        was_training = self.training
        self.eval()
        texts: list[str] = []
        for start in range(0, len(items), batch_size):
            chunk = [resample(w, sample_rate, self.config.sample_rate) for w in items[start: start + batch_size]]
            lengths = torch.tensor([w.shape[-1] for w in chunk])
            batch = torch.zeros(len(chunk), int(lengths.max()))
            for row, wav in enumerate(chunk):
                batch[row, : wav.shape[-1]] = wav
            out = self(batch.to(param.device), lengths.to(param.device))
            texts += [self.ids_to_symbols(ids) for ids in ctc_greedy_decode(out.log_probs, out.lengths)]
        self.train(was_training)
        return texts


def _as_mono_list(wavs: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """[B, T] / [B, C, T] tensor or a list of [T] / [C, T] → list of [T] (channels averaged, at least 1 sample)."""
    if isinstance(wavs, torch.Tensor):
        if wavs.ndim not in (2, 3):
            raise InvalidArgumentError("wavs", "a tensor [B, T] or [B, C, T], or a list of [T] / [C, T]",
                                       tuple(wavs.shape))
        wavs = list(wavs)
    items = []
    for wav in wavs:
        if not isinstance(wav, torch.Tensor) or wav.ndim not in (1, 2) or wav.shape[-1] == 0:
            shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise InvalidArgumentError("wavs", "non-empty [T] or [C, T] tensors", shape)
        items.append(wav.detach().cpu().float().reshape(-1, wav.shape[-1]).mean(0))
    return items


register_config("phoneme-judge", PhonemeJudge.model_type, {})
register_config("phoneme-judge-tiny", PhonemeJudge.model_type, {"dim": 32, "depth": 1, "num_heads": 2,
                                                                 "mlp_ratio": 2.0, "dropout": 0.0,
                                                                 "symbols": list("abcdefgh")})

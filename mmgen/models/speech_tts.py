"""Masked text-to-speech over RVQ codec tokens (SoundStorm / MaskGCT style), built around :class:`MaskedTransformer`.

The model maps a partly masked token grid ``[B, q, n]`` (q RVQ levels × n frames) plus the text to logits; it has
no decoding loop (that is :func:`mmgen.sampling.rvq.generate_levels`). Its parts:

* a small **symbol encoder** (phonemes or characters → states ``[B, L, dim]``; pre-norm self-attention blocks);
* **style**: a voice embedding (id ``len(voices)`` = unknown voice) and a speaking-rate embedding (words per
  minute, with a learned "unknown rate"), put in front of the text states as two extra context tokens;
* the **masked transformer** over frames: the q tokens of a frame are embedded (shared table + a level embedding)
  and summed, as in SoundStorm, so a step costs n tokens rather than q·n; each level gets its own output projection
  before the shared codebook head. It cross-attends to ``[style, text]`` (keys/values cached per prompt with
  :meth:`SpeechTTS.project_context`). Every frame also gets the text state of the symbol it falls in and a sin/cos
  code of its relative position in the utterance (the text states get the same code);
* **alignment** (``config.alignment``): with ``"durations"`` (FastSpeech-style) a duration predictor gives the
  frames of every symbol, trained on the per-symbol durations of the data (``mmgen data speech`` writes espeak-ng's
  own phoneme timings), and frame f holds the state of the symbol whose span covers it, so the transformer never
  has to discover the alignment; with ``"uniform"`` (data without durations) a length predictor gives frames per
  symbol from the pooled text and style, symbols are paced uniformly and cross-attention learns the rest.
  Either way :attr:`SpeechCondition.symbol_frames` holds the frames of each symbol, and the spans are scaled to
  the actual length of the grid (a forced duration, a prompt + continuation).

Padding frames (batches of different lengths) are excluded from self-attention with a key-padding mask.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from mmgen.errors import InvalidArgumentError
from mmgen.models.masked_transformer import ContextKV, MaskedTransformer, MaskedTransformerConfig
from mmgen.nn.positions import sincos_grid_embedding
from mmgen.nn.transformer import TransformerBlock
from mmgen.pretrained import PretrainedModel
from mmgen.registry import register_config
from mmgen.sampling.rvq import frame_mask


@dataclass
class SpeechTTSConfig:
    """Architecture of :class:`SpeechTTS`.

    ``codebook_size``, ``num_levels`` (RVQ levels modelled, the first ones of the codec) and ``frame_rate`` follow
    the audio codec; ``symbols``/``text_kind`` are the text vocabulary, ``voices`` the voice names seen in
    training; speaking rates are words per minute, normalised as ``(rate - rate_center) / rate_spread``.
    """

    codebook_size: int = 1024
    num_levels: int = 4
    max_frames: int = 1024
    frame_rate: float = 50.0
    dim: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    encoder_depth: int = 3
    text_kind: Literal["phonemes", "characters"] = "phonemes"
    symbols: tuple[str, ...] = ()
    voices: tuple[str, ...] = ()
    rate_center: float = 160.0
    rate_spread: float = 30.0
    alignment: Literal["uniform", "durations"] = "uniform"

    def __post_init__(self) -> None:
        if self.text_kind not in ("phonemes", "characters"):
            raise InvalidArgumentError("text_kind", "'phonemes' or 'characters'", self.text_kind)
        if self.alignment not in ("uniform", "durations"):
            raise InvalidArgumentError("alignment", "'uniform' or 'durations'", self.alignment)
        if self.dim % self.num_heads or self.dim % 2:
            raise InvalidArgumentError("dim", f"an even multiple of num_heads={self.num_heads}", self.dim)

    def transformer_config(self) -> MaskedTransformerConfig:
        return MaskedTransformerConfig(
            codebook_size=self.codebook_size, grid=(self.max_frames,), dim=self.dim, depth=self.depth,
            num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, positions="learned", context_dim=self.dim,
            dropout=self.dropout)


@dataclass
class SpeechCondition:
    """Encoded text + style for a batch (compute once per prompt).

    Attributes:
        context: ``[B, 2 + L, dim]`` cross-attention states (voice, rate, then text); ``context_mask``: ``[B, 2 + L]``.
        text_states: ``[B, L, dim]``; ``text_mask``: ``[B, L]`` bool, True at real symbols of kept text.
        symbol_frames: float ``[B, L]``, frames of each symbol (0 at padding): the data's durations in training,
            else the model's prediction. Frames are assigned to symbols by these spans.
        log_duration: float ``[B, L]``, the length head's output: ``log(1 + frames)`` per symbol (``"durations"``
            models) or log frames per symbol of the whole text, repeated (``"uniform"``), for the length loss.
    """

    context: Tensor
    context_mask: Tensor
    text_states: Tensor
    text_mask: Tensor
    symbol_frames: Tensor
    log_duration: Tensor

    @property
    def num_symbols(self) -> Tensor:
        """Long ``[B]``, real symbols per sample (0 where the text was dropped)."""
        return self.text_mask.sum(dim=1)

    def predicted_frames(self) -> Tensor:
        """Float ``[B]``: the number of frames of the whole text (the sum of the symbol spans)."""
        return self.symbol_frames.float().sum(dim=1)

    def without_text(self) -> SpeechCondition:
        """The same style (voice, rate) with the text hidden: the unconditional branch of guidance."""
        context_mask = self.context_mask.clone()
        context_mask[:, 2:] = False
        return SpeechCondition(self.context, context_mask, self.text_states, torch.zeros_like(self.text_mask),
                               torch.zeros_like(self.symbol_frames), self.log_duration)

    def stack(self, other: SpeechCondition) -> SpeechCondition:
        """Both conditions along the batch (``self`` first), for one batched forward."""
        return SpeechCondition(*(torch.cat([getattr(self, f.name), getattr(other, f.name)])
                                 for f in dataclasses.fields(self)))


def progress_embedding(fraction: Tensor, dim: int, max_frequency: float = 300.0) -> Tensor:
    """Sin/cos code ``[..., dim]`` of relative positions ``fraction [...]`` in [0, 1] (frequencies 1..300 rad)."""
    half = dim // 2
    freqs = torch.logspace(0, math.log10(max_frequency), half, device=fraction.device, dtype=torch.float32)
    angles = fraction.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class SpeechTTS(PretrainedModel):
    """``forward(tokens [B, q, n], condition, lengths [B]?) -> logits [B, q * n, codebook_size]``."""

    config_class = SpeechTTSConfig
    model_type = "speech_tts"

    def __init__(self, config: SpeechTTSConfig):
        super().__init__(config)
        c = config
        self.symbol_embedding = nn.Embedding(len(c.symbols) + 1, c.dim, padding_idx=0)
        self.encoder = nn.ModuleList(TransformerBlock(c.dim, c.num_heads, c.mlp_ratio, dropout=c.dropout)
                                     for _ in range(c.encoder_depth))
        self.encoder_norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.voice_embedding = nn.Embedding(len(c.voices) + 1, c.dim)
        self.rate_embedding = nn.Sequential(nn.Linear(1, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.unknown_rate = nn.Parameter(torch.zeros(c.dim))
        self.aligned_projection = nn.Linear(c.dim, c.dim)
        self.frame_progress_scale = nn.Parameter(torch.tensor(0.02))
        # "uniform": frames per symbol from pooled text + style; "durations": log(1 + frames) of every symbol
        width = 2 * c.dim if c.alignment == "uniform" else c.dim
        self.length_head = nn.Sequential(nn.Linear(width, c.dim), nn.SiLU(), nn.Linear(c.dim, 1))
        nn.init.zeros_(self.length_head[2].weight)
        nn.init.constant_(self.length_head[2].bias, math.log(4.0 if c.alignment == "uniform" else 3.0))
        self.level_embedding = nn.Parameter(torch.randn(c.num_levels, c.dim) * 0.02)
        self.level_projection = nn.Linear(c.dim, c.num_levels * c.dim)
        self.transformer = MaskedTransformer(c.transformer_config())

    @property
    def mask_id(self) -> int:
        return self.transformer.mask_id

    @property
    def unknown_voice(self) -> int:
        return len(self.config.voices)

    def voice_id(self, voice: str | None) -> int:
        """The id of a voice name (None = unknown voice); :class:`InvalidArgumentError` listing the known ones."""
        if voice is None:
            return self.unknown_voice
        if voice not in self.config.voices:
            raise InvalidArgumentError("voice", f"one of {list(self.config.voices)} (or none)", voice)
        return self.config.voices.index(voice)

    # ---------------------------------------------------------------------------------------------- the text
    def _style(self, voice_ids: Tensor, rates: Tensor | None) -> tuple[Tensor, Tensor]:
        """Voice and rate embeddings ``[B, dim]`` each; NaN (or None) rates use the learned unknown rate."""
        voice = self.voice_embedding(voice_ids)
        if rates is None:
            return voice, self.unknown_rate.expand_as(voice)
        rates = rates.to(voice.device, torch.float32)
        normalised = ((rates.nan_to_num(self.config.rate_center) - self.config.rate_center)
                      / self.config.rate_spread)
        rate = self.rate_embedding(normalised[:, None].to(voice.dtype))
        return voice, torch.where(rates.isnan()[:, None], self.unknown_rate.to(rate.dtype).expand_as(rate), rate)

    def encode_text(self, symbol_ids: Tensor, symbol_mask: Tensor, voice_ids: Tensor, rates: Tensor | None = None,
                    drop_text: Tensor | None = None, symbol_frames: Tensor | None = None) -> SpeechCondition:
        """Encode ``symbol_ids [B, L]`` (mask ``[B, L]``), ``voice_ids [B]``, ``rates [B]`` (wpm, NaN = unknown).

        ``drop_text [B]`` (bool) hides the text of some samples (classifier-free guidance, unconditional
        continuation): only the style tokens stay visible to the transformer. ``symbol_frames [B, L]`` (float, the
        data's durations in frames) replaces the predicted spans (training with ``alignment="durations"``).
        """
        batch, length = symbol_ids.shape
        lengths = symbol_mask.sum(dim=1).clamp(min=1)
        x = self.symbol_embedding(symbol_ids) + sincos_grid_embedding((length,), self.config.dim,
                                                                      device=symbol_ids.device)
        for block in self.encoder:
            x = block(x, key_padding_mask=symbol_mask)
        index = torch.arange(length, device=x.device)[None, :]
        fraction = (index + 0.5) / lengths[:, None]
        states = self.encoder_norm(x) + progress_embedding(fraction, self.config.dim).to(x.dtype)
        text_mask = symbol_mask if drop_text is None else symbol_mask & ~drop_text.to(symbol_mask.device)[:, None]
        voice, rate = self._style(voice_ids, rates)
        log_duration, predicted = self._durations(states, text_mask, voice + rate)
        frames = (predicted if symbol_frames is None else symbol_frames.float()) * text_mask
        context = torch.cat([voice[:, None], rate[:, None].to(voice.dtype), states.to(voice.dtype)], dim=1)
        style_mask = torch.ones(batch, 2, dtype=torch.bool, device=x.device)
        return SpeechCondition(context, torch.cat([style_mask, text_mask], dim=1), states, text_mask, frames,
                               log_duration)

    def _durations(self, states: Tensor, text_mask: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """The length head's output and the frames it predicts per symbol, both float ``[B, L]``.

        "durations": ``log(1 + frames)`` of every symbol; "uniform": log frames per symbol of the pooled text,
        the same for every symbol.
        """
        if self.config.alignment == "durations":
            log_duration = self.length_head(states + style[:, None].to(states.dtype))[..., 0].float()
            return log_duration, log_duration.expm1().clamp(min=0)
        pooled = (states * text_mask[..., None]).sum(1) / text_mask.sum(1, keepdim=True).clamp(min=1)
        log_fps = self.length_head(torch.cat([pooled, style], dim=-1)).float().expand(-1, states.shape[1])
        return log_fps, log_fps.exp()

    def project_context(self, condition: SpeechCondition) -> ContextKV:
        """Per-block cross-attention keys/values of the condition: compute once per prompt, pass as context_kv."""
        return self.transformer.project_context(condition.context)

    # ------------------------------------------------------------------------------------------ the frames
    def _frame_features(self, condition: SpeechCondition, lengths: Tensor, num_frames: int) -> Tensor:
        """``[B, n, dim]``: the text state of the symbol each frame falls in + the frame's relative-position code.

        The symbol spans (:attr:`SpeechCondition.symbol_frames`) are scaled to ``lengths`` frames.
        """
        fraction = (torch.arange(num_frames, device=lengths.device)[None, :] + 0.5) / lengths.clamp(min=1)[:, None]
        symbols = condition.text_mask.sum(1)
        ends = condition.symbol_frames.float().cumsum(1)
        ends = ends / ends[:, -1:].clamp(min=1e-6)                                     # [B, L] span ends in (0, 1]
        index = torch.searchsorted(ends.contiguous(), fraction.contiguous(), right=True)
        index = torch.minimum(index, (symbols - 1).clamp(min=0)[:, None])
        aligned = condition.text_states.gather(1, index[..., None].expand(-1, -1, condition.text_states.shape[-1]))
        aligned = self.aligned_projection(aligned) * (symbols > 0)[:, None, None]
        code = progress_embedding(fraction.clamp(max=1.0), self.config.dim).to(aligned.dtype)
        return aligned + self.frame_progress_scale * code

    def forward(self, tokens: Tensor, condition: SpeechCondition, lengths: Tensor | None = None, *,
                context_kv: ContextKV | None = None) -> Tensor:
        """Logits for every position of the grid.

        Args:
            tokens: Long ``[B, q, n]``, ids in ``[0, codebook_size]`` (``codebook_size`` = [MASK]).
            condition: from :meth:`encode_text`.
            lengths: Long ``[B]`` real frames per sample (default n); later frames are padding.
            context_kv: from :meth:`project_context` (saves recomputing keys/values at every step).

        Returns:
            ``[B, q * n, codebook_size]`` logits in row-major (level, frame) order.
        """
        transformer = self.transformer
        if tokens.ndim != 3 or tokens.shape[1] != self.config.num_levels:
            raise InvalidArgumentError("tokens", f"a [B, {self.config.num_levels}, n] grid", tuple(tokens.shape))
        batch, levels, frames = tokens.shape
        if frames > self.config.max_frames:
            raise InvalidArgumentError("frames", f"at most {self.config.max_frames} "
                                       f"({self.config.max_frames / self.config.frame_rate:.1f} s)", frames)
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > self.mask_id):
            raise InvalidArgumentError("tokens", f"ids in [0, {self.mask_id}]",
                                       f"range [{int(tokens.min())}, {int(tokens.max())}]")
        lengths = torch.full((batch,), frames, device=tokens.device) if lengths is None else lengths.to(tokens.device)
        x = (transformer.token_embedding(tokens.long()) + self.level_embedding[:, None]).sum(1)
        x = x + transformer.learned_positions((frames,)).to(x.dtype)
        x = x + self._frame_features(condition, lengths, frames).to(x.dtype)             # [B, n, dim]
        padding = frame_mask(lengths, frames) if bool((lengths < frames).any()) else None
        for index, block in enumerate(transformer.blocks):
            kv = context_kv[index] if context_kv is not None else None
            x = block(x, context=None if kv is not None else condition.context, context_mask=condition.context_mask,
                      key_padding_mask=padding, context_kv=kv)
        per_level = self.level_projection(transformer.final_norm(x)).reshape(batch, frames, levels, -1)
        return transformer.head(per_level.transpose(1, 2)).reshape(batch, levels * frames, -1)


register_config("tts-speech", SpeechTTS.model_type, {
    "codebook_size": 1024, "num_levels": 4, "max_frames": 1024, "dim": 256, "depth": 6, "num_heads": 4,
    "encoder_depth": 3, "dropout": 0.0})
register_config("tts-tiny", SpeechTTS.model_type, {
    "codebook_size": 32, "num_levels": 2, "max_frames": 128, "dim": 32, "depth": 2, "num_heads": 2,
    "encoder_depth": 1, "symbols": list("abcdefghijklmnopqrstuvwxyz .,'?"), "voices": ["en-us", "en-gb"]})

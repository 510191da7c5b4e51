"""Text-to-speech, audio inpainting and continuation with a masked TTS transformer over RVQ codec tokens.

The pipeline wires a :class:`~mmgen.models.speech_tts.SpeechTTS`, an audio tokenizer (codec) and the level-wise
sampler of :mod:`mmgen.sampling.rvq`. Folder layout::

    PIPE/pipeline.json       {"pipeline": "speech", "sampler": {...defaults}}
    PIPE/transformer/        config.json + model.safetensors (SpeechTTS: text vocabulary and voices inside)
    PIPE/audio_tokenizer/    config.json + model.safetensors

Known audio (a voice prompt, the audio around an inpainted span, the start of a continuation) is kept as unmasked
tokens, so the sampler never changes it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmgen.conditioning.phonemes import SymbolVocabulary, text_to_symbols
from mmgen.errors import CheckpointError, InvalidArgumentError
from mmgen.models.speech_tts import SpeechCondition, SpeechTTS
from mmgen.pipelines.folders import PIPELINE_FILE, load_component, read_pipeline_index, save_component
from mmgen.pretrained import write_json_atomic
from mmgen.sampling import MaskGITSampler, apply_guidance
from mmgen.sampling.rvq import generate_levels, level_steps

logger = logging.getLogger(__name__)


@dataclass
class SpeechSamplingOptions:
    """How to decode (defaults stored in pipeline.json): steps of the coarse level, temperatures, guidance."""

    num_steps: int = 12
    temperature: float = 1.0
    fine_temperature: float = 0.5
    choice_temperature: float = 4.5
    guidance_scale: float = 1.0
    top_k: int | None = None

    def validate(self) -> SpeechSamplingOptions:
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or self.num_steps <= 0:
            raise InvalidArgumentError("num_steps", "a positive integer", self.num_steps)
        for name in ("temperature", "fine_temperature", "choice_temperature", "guidance_scale"):
            if getattr(self, name) < 0:
                raise InvalidArgumentError(name, "a number >= 0", getattr(self, name))
        return self


@dataclass
class SpeechOutput:
    """``wav``: float ``[1, T]`` in [-1, 1] at ``sample_rate``; ``tokens``: Long ``[1, q, n]``; ``extras``: details."""

    wav: Tensor
    sample_rate: int
    tokens: Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.wav.shape[-1] / self.sample_rate


class SpeechPipeline:
    """``pipe.speak("Hello there.")``, ``pipe.inpaint(wav, 1.0, 1.6, text=...)``, ``pipe.continue_(wav, seconds=2)``."""

    def __init__(self, transformer: SpeechTTS, audio_tokenizer: Any, defaults: SpeechSamplingOptions | None = None):
        self.transformer = transformer.eval()
        self.audio_tokenizer = audio_tokenizer.eval()
        self.defaults = defaults or SpeechSamplingOptions()
        self.vocabulary = SymbolVocabulary(transformer.config.symbols)
        if audio_tokenizer.codebook_size != transformer.config.codebook_size:
            raise CheckpointError(f"the audio tokenizer has {audio_tokenizer.codebook_size} codes per level but the "
                                  f"transformer models {transformer.config.codebook_size}")

    # ---------------------------------------------------------------------------------------------- folders
    def save_pretrained(self, directory: str | Path, *, dtype: torch.dtype | None = None,
                        audio_tokenizer_path: str | Path | None = None) -> Path:
        """Write ``pipeline.json`` + ``transformer/`` + ``audio_tokenizer/``.

        ``audio_tokenizer_path``: an existing folder holding this pipeline's codec; the pipeline then records
        its path relative to ``directory`` instead of a copy (shipped pipelines share one codec folder).
        """
        directory = Path(directory)
        self.transformer.save_pretrained(directory / "transformer", dtype=dtype)
        index: dict[str, Any] = {"pipeline": "speech", "sampler": self.defaults.__dict__}
        save_component(self.audio_tokenizer, directory, "audio_tokenizer", index, dtype=dtype,
                       shared=audio_tokenizer_path)
        write_json_atomic(index, directory / PIPELINE_FILE)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> SpeechPipeline:
        from mmgen.registry import load_pretrained

        directory = Path(directory)
        data = read_pipeline_index(directory, "transformer/ and audio_tokenizer/")
        transformer = load_pretrained(directory / "transformer", device=device)
        if not isinstance(transformer, SpeechTTS):
            raise CheckpointError(f"{directory / 'transformer'}: holds a {type(transformer).__name__}, not SpeechTTS")
        return cls(transformer, load_component(directory, data, "audio_tokenizer", device),
                   SpeechSamplingOptions(**data.get("sampler", {})))

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def sample_rate(self) -> int:
        return int(self.audio_tokenizer.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.audio_tokenizer.frame_rate)

    @property
    def num_levels(self) -> int:
        return self.transformer.config.num_levels

    def options(self, **overrides: Any) -> SpeechSamplingOptions:
        values = {**self.defaults.__dict__, **{k: v for k, v in overrides.items() if v is not None}}
        return SpeechSamplingOptions(**values).validate()

    # ----------------------------------------------------------------------------------------------- audio
    def prepare_audio(self, audio: Tensor, sample_rate: int) -> Tensor:
        """``audio [T]``, ``[C, T]`` or ``[1, C, T]`` at ``sample_rate`` → mono ``[1, 1, T']`` at the codec's rate.

        A different rate is resampled with a notice on the ``mmgen.pipelines.speech`` logger.
        """
        from mmgen.data.audio_io import resample

        wav = audio.detach().float()
        wav = wav.reshape(1, -1) if wav.ndim == 1 else wav.reshape(-1, wav.shape[-1])
        if wav.shape[-1] == 0:
            raise InvalidArgumentError("audio", "at least one sample", "empty audio")
        wav = wav.mean(0, keepdim=True)
        if int(sample_rate) != self.sample_rate:
            logger.warning("audio at %d Hz resampled to the codec's %d Hz", int(sample_rate), self.sample_rate)
            wav = resample(wav, int(sample_rate), self.sample_rate)
        return wav.clamp(-1, 1)[None].to(self.device)

    @torch.no_grad()
    def encode(self, wav: Tensor) -> Tensor:
        """``wav [1, 1, T]`` at the codec's rate → Long ``[1, q, n]`` (the model's levels)."""
        return self.audio_tokenizer.encode(wav, num_quantizers=self.num_levels)[:, : self.num_levels].long()

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """Long ``[B, q, n]`` → float ``[B, 1, n * hop]`` in [-1, 1]."""
        return self.audio_tokenizer.decode(tokens).float().clamp(-1, 1)

    # -------------------------------------------------------------------------------------------- the text
    def condition(self, text: str | None, voice: str | None = None, rate: float | None = None) -> SpeechCondition:
        """Encode one text (None = no text: unconditional) with a voice name and speaking rate (wpm; None = unknown)."""
        model = self.transformer
        voice_id = torch.tensor([model.voice_id(voice)], device=self.device)
        if text is None:
            ids = torch.zeros(1, 1, dtype=torch.long, device=self.device)
            mask = ids != 0
        else:
            symbols = text_to_symbols(text, model.config.text_kind, voice if voice is not None else "en-us")
            ids, mask = self.vocabulary.batch([symbols], self.device, strict=False)
        rates = torch.tensor([float("nan") if rate is None else float(rate)], device=self.device)
        with torch.no_grad():
            return model.encode_text(ids, mask, voice_id, rates)

    def predicted_frames(self, text: str, voice: str | None = None, rate: float | None = None) -> int:
        """The length predictor's frame count for ``text`` (at least 1)."""
        return max(1, round(float(self.condition(text, voice, rate).predicted_frames()[0])))

    # ----------------------------------------------------------------------------------------------- the loop
    @torch.no_grad()
    def generate_tokens(self, tokens: Tensor, condition: SpeechCondition, options: SpeechSamplingOptions,
                        generator: torch.Generator | None = None) -> Tensor:
        """Fill the ``mask_id`` positions of ``tokens [1, q, n]`` level by level; other positions never change."""
        model = self.transformer
        guided = options.guidance_scale != 1.0 and bool(condition.text_mask.any())
        kv = model.project_context(condition)  # once per call; the text-less branch differs only in its mask
        if guided:  # cond and uncond run as one batch of 2B
            condition = condition.stack(condition.without_text())
            kv = [(torch.cat([k, k]), torch.cat([v, v])) for k, v in kv]
        samplers = [MaskGITSampler("cosine", options.temperature if level == 0 else options.fine_temperature,
                                   options.choice_temperature, options.top_k) for level in range(self.num_levels)]

        def logits_fn(grid: Tensor, level: int, step: int) -> Tensor:
            if not guided:
                return model(grid, condition, context_kv=kv).float()
            cond, uncond = model(torch.cat([grid, grid]), condition, context_kv=kv).float().chunk(2)
            return apply_guidance(cond, uncond, options.guidance_scale)

        steps = level_steps(self.num_levels, options.num_steps)
        return generate_levels(samplers, logits_fn, tokens.to(self.device), model.mask_id, steps=steps,
                               generator=generator)

    def _blank(self, frames: int) -> Tensor:
        return torch.full((1, self.num_levels, frames), self.transformer.mask_id, dtype=torch.long, device=self.device)

    def _frames(self, seconds: float) -> int:
        limit = self.transformer.config.max_frames / self.frame_rate
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= limit:
            raise InvalidArgumentError("seconds", f"a duration in (0, {limit:.1f}] seconds", seconds)
        return max(1, round(seconds * self.frame_rate))

    def _check_length(self, frames: int) -> int:
        limit = self.transformer.config.max_frames
        if frames > limit:
            raise InvalidArgumentError("text", f"at most {limit / self.frame_rate:.1f} s of speech for this model",
                                       f"{frames / self.frame_rate:.1f} s")
        return frames

    # ------------------------------------------------------------------------------------------ user calls
    def speak(self, text: str, *, prompt_audio: Tensor | None = None, prompt_sample_rate: int | None = None,
              prompt_text: str | None = None, voice: str | None = "auto", rate: float | None = None,
              seconds: float | None = None, generator: torch.Generator | None = None, **options: Any) -> SpeechOutput:
        """Speak ``text``; with ``prompt_audio`` continue in its voice (its transcript ``prompt_text`` helps).

        Args:
            voice: a voice name of the model, None (unknown voice) or ``"auto"`` (``en-us`` or the first voice
                without a prompt, unknown with one).
            rate: speaking rate in words per minute (default: the training data's centre without a prompt).
            seconds: force the duration of the new speech (default: the length predictor).
            options: :class:`SpeechSamplingOptions` fields (``num_steps``, ``temperature``, ``guidance_scale``...).

        Returns:
            :class:`SpeechOutput` of the new speech only (the prompt is not repeated).
        """
        opts = self.options(**options)
        config = self.transformer.config
        if voice == "auto":
            voice = None if prompt_audio is not None or not config.voices else \
                "en-us" if "en-us" in config.voices else config.voices[0]
        if prompt_audio is None:
            rate = config.rate_center if rate is None else rate
            condition = self.condition(text, voice, rate)
            frames = self._frames(seconds) if seconds else round(float(condition.predicted_frames()[0]))
            tokens = self.generate_tokens(self._blank(self._check_length(max(1, frames))), condition, opts, generator)
            return SpeechOutput(self.decode(tokens)[0], self.sample_rate, tokens, {"frames": tokens.shape[-1]})
        full = self.continue_(prompt_audio, prompt_sample_rate or self.sample_rate, text=text, audio_text=prompt_text,
                              seconds=seconds, voice=voice, rate=rate, generator=generator, **options)
        start = full.extras["prompt_frames"]
        tokens = full.tokens[..., start:]
        return SpeechOutput(self.decode(tokens)[0], self.sample_rate, tokens, full.extras)

    def continue_(self, audio: Tensor, sample_rate: int, *, seconds: float | None = None, text: str | None = None,
                  audio_text: str | None = None, voice: str | None = None, rate: float | None = None,
                  generator: torch.Generator | None = None, **options: Any) -> SpeechOutput:
        """Continue ``audio`` by ``seconds`` (default: the predicted length of ``text``) saying ``text`` (optional).

        ``audio_text`` (the transcript of ``audio``) makes the text cover the whole clip, as in training; the new
        length is then scaled by the clip's own pace. Returns the whole clip: the given audio + the continuation.
        """
        if seconds is None and text is None:
            raise InvalidArgumentError("seconds", "a duration (or a text to speak) for the continuation")
        opts = self.options(**options)
        prompt = self.encode(self.prepare_audio(audio, sample_rate))
        known = prompt.shape[-1]
        full_text = " ".join(t for t in (audio_text, text) if t is not None) or None
        condition = self.condition(full_text, voice, rate)
        if seconds is not None:
            new = self._frames(seconds)
        elif audio_text is not None:
            pace = known / max(1, self.predicted_frames(audio_text, voice, rate))
            new = round(pace * self.predicted_frames(text, voice, rate))
        else:
            new = self.predicted_frames(text, voice, rate)
        tokens = torch.cat([prompt, self._blank(max(1, new))], dim=-1)
        self._check_length(tokens.shape[-1])
        tokens = self.generate_tokens(tokens, condition, opts, generator)
        return SpeechOutput(self.decode(tokens)[0], self.sample_rate, tokens, {"prompt_frames": known})

    def inpaint(self, audio: Tensor, sample_rate: int, start: float, end: float, *, text: str | None = None,
                crossfade: float = 0.01, generator: torch.Generator | None = None, **options: Any) -> SpeechOutput:
        """Regenerate seconds ``[start, end)`` of ``audio``; ``text`` is what the whole edited clip should say.

        Tokens outside the span are kept exactly (``extras["token_mask"]`` marks the regenerated frames); the
        original waveform is pasted back outside the span with a ``crossfade``-second linear seam.
        """
        opts = self.options(**options)
        wav = self.prepare_audio(audio, sample_rate)
        duration = wav.shape[-1] / self.sample_rate
        if not (isinstance(start, (int, float)) and isinstance(end, (int, float)) and 0 <= start < end <= duration):
            raise InvalidArgumentError("--start/--end", f"0 <= start < end <= {duration:.2f} (the audio's length)",
                                       f"start={start}, end={end}")
        original = self.encode(wav)
        frames = original.shape[-1]
        first = min(frames - 1, math.floor(start * self.frame_rate))
        last = min(frames, max(first + 1, math.ceil(end * self.frame_rate - 1e-6)))
        span = torch.zeros(frames, dtype=torch.bool, device=self.device)
        span[first:last] = True
        condition = self.condition(text, None, None)
        tokens = self.generate_tokens(original.masked_fill(span, self.transformer.mask_id), condition, opts, generator)
        decoded = self.decode(tokens)[0]
        out = paste_outside(wav[0], decoded[..., : wav.shape[-1]], first * self.hop_length, last * self.hop_length,
                            round(crossfade * self.sample_rate))
        return SpeechOutput(out, self.sample_rate, tokens, {"token_mask": span, "original_tokens": original})

    @property
    def hop_length(self) -> int:
        return int(self.audio_tokenizer.hop_length)


def paste_outside(original: Tensor, generated: Tensor, begin: int, end: int, fade: int) -> Tensor:
    """``generated`` inside samples ``[begin, end)`` and ``original`` elsewhere, with ``fade``-sample linear seams.

    ``original``/``generated``: ``[C, T]`` (``generated`` is zero-padded or cut to ``T``).
    """
    length = original.shape[-1]
    if generated.shape[-1] < length:
        generated = torch.nn.functional.pad(generated, (0, length - generated.shape[-1]))
    generated = generated[..., :length]
    weight = torch.zeros(length, device=original.device)
    weight[begin:end] = 1.0
    if fade > 0:
        ramp = torch.linspace(0, 1, fade + 2, device=original.device)[1:-1]
        weight[max(0, begin - fade):begin] = ramp[fade - min(fade, begin):]
        tail = weight[end:end + fade]
        tail.copy_(ramp.flip(0)[: tail.shape[0]])
    return original * (1 - weight) + generated * weight


__all__ = ["SpeechOutput", "SpeechPipeline", "SpeechSamplingOptions", "paste_outside"]

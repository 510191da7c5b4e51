"""Train masked text-to-speech (phonemes → RVQ codec tokens, level-wise SoundStorm masking) on speech shards.

Speech shards (``mmgen data speech``: ``.wav`` + ``.json`` with text, phonemes, voice, rate) are encoded once through
the frozen ``--audio-tokenizer`` into ``RUN/tokens/`` (``tokens.npy`` ``[q, n]`` + metadata; reused on resume), or
``--data`` can point at such pre-tokenized shards directly. The text vocabulary and the voices come from the
training split and are saved in the model's config. Each step picks an RVQ level per sample (coarser levels
visible, finer ones masked), keeps a random prompt prefix visible for a fraction of samples (voice prompts and
continuation), drops text/voice/rate now and then (guidance, unconditional continuation, unknown voices) and trains
the length predictor on the true frame counts. When every utterance has per-symbol durations (espeak-ng data) the
model aligns frames to phonemes by them (``alignment=durations``, FastSpeech-style), else it paces symbols
uniformly and learns the alignment by cross-attention (``alignment=uniform``). At the end ``RUN/pipeline`` is a
ready speech pipeline.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmgen.conditioning.phonemes import SymbolVocabulary, default_text_kind, text_to_symbols
from mmgen.data import ShardStream, expand_shards, iter_raw_samples
from mmgen.data.writer import ShardWriter
from mmgen.errors import DataError, InvalidArgumentError
from mmgen.models.speech_tts import SpeechCondition, SpeechTTS
from mmgen.registry import create_model, get_config
from mmgen.sampling.rvq import rvq_training_mask
from mmgen.training.task import LossOutput, TrainTask

TOKENS_MEMBER = "tokens.npy"
VOCAB_FILE = "speech_tokens.json"


# --------------------------------------------------------------------------------------------- pre-tokenizing
def _symbols_of(meta: dict[str, Any], text_kind: str) -> str:
    if text_kind == "phonemes" and meta.get("phonemes"):
        return str(meta["phonemes"])
    return text_to_symbols(str(meta["text"]), text_kind, meta.get("voice"))  # type: ignore[arg-type]


def _durations_of(meta: dict[str, Any], symbols: str) -> list[float] | None:
    """The sample's seconds per symbol when it has them for exactly these symbols (espeak-ng phoneme data)."""
    durations = meta.get("durations")
    if meta.get("phonemes") != symbols or not isinstance(durations, list) or len(durations) != len(symbols):
        return None
    return [float(d) for d in durations]


def symbol_frames(seconds: list[float], total_frames: int, keep_frames: int | None = None) -> torch.Tensor:
    """Float ``[L]`` frames per symbol: ``seconds`` scaled to sum to ``total_frames``, then cut after
    ``keep_frames`` (symbols past the cut get 0)."""
    frames = torch.tensor(seconds, dtype=torch.float32).clamp(min=0)
    frames = frames * (total_frames / float(frames.sum().clamp(min=1e-9)))
    if keep_frames is not None and keep_frames < total_frames:
        ends = frames.cumsum(0).clamp(max=keep_frames)
        frames = torch.diff(ends, prepend=ends.new_zeros(1))
    return frames


def pretokenize_speech(codec: Any, data: str, out_dir: str | Path, *, levels: int, text_kind: str,
                       splits: tuple[str, ...] = ("train", "holdout")) -> dict[str, Any]:
    """Encode every utterance of ``data`` into ``out_dir/{split}-*.tar`` and write ``out_dir/speech_tokens.json``.

    Returns the summary written there: ``{"text_kind", "symbols", "voices", "rates", "levels", "counts",
    "durations"}`` (symbols and voices from the train split; ``durations``: train utterances with per-symbol
    durations).
    """
    from tqdm.auto import tqdm

    from mmgen.data.audio_io import decode_audio_bytes, resample

    out_dir = Path(out_dir)
    symbols: set[str] = set()
    voices: set[str] = set()
    rates: list[float] = []
    counts: dict[str, int] = {}
    timed = 0
    for split in splits:
        if Path(data).is_dir():
            shards = expand_shards(data, split=split) if any(Path(data).glob(f"{split}-*.tar")) else []
        else:
            shards = expand_shards(data) if split == "train" else []
        if not shards:
            continue
        with ShardWriter(out_dir, split, 1000, source=f"{levels}-level codec tokens of {data}") as writer:
            raws = (raw for shard in shards for raw in iter_raw_samples(shard))
            for raw in tqdm(raws, desc=f"tokenizing {split}", unit="utt", total=_split_size(data, split)):
                audio = next((raw[ext] for ext in ("wav", "flac", "ogg") if ext in raw), None)
                if audio is None or "json" not in raw:
                    continue
                meta = json.loads(raw["json"])
                wav, rate = decode_audio_bytes(audio, raw["__key__"])
                wav = resample(wav.mean(0, keepdim=True), rate, codec.sample_rate)
                with torch.inference_mode():
                    tokens = codec.encode(wav[None].clamp(-1, 1), num_quantizers=levels)[0, :levels].numpy()
                buffer = io.BytesIO()
                np.save(buffer, tokens.astype(np.int16), allow_pickle=False)
                record = {"text": meta["text"], "symbols": _symbols_of(meta, text_kind), "voice": meta.get("voice"),
                          "rate": meta.get("rate"), "seconds": meta.get("seconds")}
                durations = _durations_of(meta, record["symbols"])
                if durations is not None:
                    record["durations"] = durations
                writer.write(raw["__key__"], {TOKENS_MEMBER: buffer.getvalue(), "json": record})
                if split == "train":
                    timed += durations is not None
                    symbols.update(record["symbols"])
                    voices.update([record["voice"]] if record["voice"] else [])
                    rates.extend([float(record["rate"])] if record["rate"] else [])
        counts[split] = writer.count
    if not counts.get("train"):
        raise DataError(f"{data}: no training utterances with audio and a .json (text) found")
    summary = {"text_kind": text_kind, "symbols": sorted(symbols), "voices": sorted(voices),
               "rates": [min(rates), max(rates)] if rates else None, "levels": levels, "counts": counts,
               "durations": timed}
    (out_dir / VOCAB_FILE).write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return summary


def _split_size(data: str, split: str) -> int | None:
    from mmgen.data import read_manifest

    try:
        return int(read_manifest(data)["splits"][split]["samples"])
    except (KeyError, TypeError, ValueError, OSError):
        return None


# ------------------------------------------------------------------------------------------------ batches
class SpeechTokenDecoder:
    """Raw pre-tokenized sample → ``{"tokens": Long [q, n], "symbols": Long [L], "voice": int, "rate": float,
    "durations": float [L] frames per symbol or None}``."""

    def __init__(self, symbols: tuple[str, ...], voices: tuple[str, ...], levels: int, max_frames: int):
        self.vocabulary = SymbolVocabulary(symbols)
        self.voices, self.levels, self.max_frames = voices, levels, max_frames

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        if TOKENS_MEMBER not in raw or "json" not in raw:
            raise ValueError(f"sample {raw.get('__key__')!r} lacks {TOKENS_MEMBER} or .json (not pre-tokenized)")
        tokens = np.load(io.BytesIO(raw[TOKENS_MEMBER]), allow_pickle=False)
        frames = tokens.shape[-1]
        tokens = tokens[: self.levels, : self.max_frames]
        meta = json.loads(raw["json"])
        voice = meta.get("voice")
        seconds = meta.get("durations")
        durations = symbol_frames(seconds, frames, self.max_frames) if seconds else None
        return {"tokens": torch.from_numpy(tokens.astype(np.int64)),
                "symbols": torch.tensor(self.vocabulary.encode(meta["symbols"])),
                "voice": self.voices.index(voice) if voice in self.voices else len(self.voices),
                "rate": float(meta["rate"]) if meta.get("rate") else float("nan"), "durations": durations}


def collate_speech(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad a list of decoded samples: tokens ``[B, q, n]`` + ``lengths``, ``symbols [B, L]`` + ``symbol_mask``,
    ``durations [B, L]`` (frames per symbol; None unless every sample has them)."""
    frames = max(s["tokens"].shape[-1] for s in samples)
    width = max(s["symbols"].shape[0] for s in samples)
    levels = samples[0]["tokens"].shape[0]
    tokens = torch.zeros(len(samples), levels, frames, dtype=torch.long)
    symbols = torch.zeros(len(samples), width, dtype=torch.long)
    for row, sample in enumerate(samples):
        tokens[row, :, : sample["tokens"].shape[-1]] = sample["tokens"]
        symbols[row, : sample["symbols"].shape[0]] = sample["symbols"]
    durations = None
    if all(s.get("durations") is not None for s in samples):
        durations = torch.zeros(len(samples), width)
        for row, sample in enumerate(samples):
            durations[row, : sample["durations"].shape[0]] = sample["durations"]
    return {"tokens": tokens, "lengths": torch.tensor([s["tokens"].shape[-1] for s in samples]),
            "symbols": symbols, "symbol_mask": symbols != 0, "durations": durations,
            "voice": torch.tensor([s["voice"] for s in samples]),
            "rate": torch.tensor([s["rate"] for s in samples], dtype=torch.float32)}


# ------------------------------------------------------------------------------------------- training step
class SpeechTTSModule(nn.Module):
    """One step: text/style dropout, SoundStorm level mask with random prompt prefixes, CE + length loss.

    ``alignment="durations"`` models align frames to symbols by the data's durations (``batch["durations"]``) and
    learn to predict them (MSE of ``log(1 + frames)`` per symbol); ``"uniform"`` ones learn frames per symbol.
    """

    def __init__(self, model: SpeechTTS, *, text_dropout: float = 0.1, style_dropout: float = 0.2,
                 prompt_prob: float = 0.3, level_weights: list[float] | None = None, length_weight: float = 1.0,
                 label_smoothing: float = 0.1):
        super().__init__()
        self.model = model
        self.text_dropout, self.style_dropout, self.prompt_prob = text_dropout, style_dropout, prompt_prob
        self.level_weights, self.length_weight, self.label_smoothing = level_weights, length_weight, label_smoothing

    def _drop(self, batch: int, prob: float, device: torch.device) -> torch.Tensor:
        return torch.rand(batch, device=device) < prob if self.training else torch.zeros(batch, dtype=torch.bool,
                                                                                          device=device)

    def forward(self, batch: dict[str, Any], step: int) -> LossOutput:
        tokens, lengths = batch["tokens"], batch["lengths"]
        size, device = tokens.shape[0], tokens.device
        drop_text = self._drop(size, self.text_dropout, device)
        voice = torch.where(self._drop(size, self.style_dropout, device), self.model.unknown_voice, batch["voice"])
        rate = batch["rate"].masked_fill(self._drop(size, self.style_dropout, device), float("nan"))
        durations = batch.get("durations") if self.model.config.alignment == "durations" else None
        if self.model.config.alignment == "durations" and durations is None:
            raise DataError("alignment='durations' needs per-symbol durations in every sample (mmgen data speech "
                            "writes them); train on this data with alignment=uniform")
        condition = self.model.encode_text(batch["symbols"], batch["symbol_mask"], voice, rate, drop_text,
                                           symbol_frames=durations)
        prompt_share = torch.rand(size, device=device) * 0.4 + 0.1
        prompt = torch.where(self._drop(size, self.prompt_prob, device), (prompt_share * lengths).long(), 0)
        masked = rvq_training_mask(tokens, self.model.mask_id, lengths=lengths, prompt_frames=prompt,
                                   level_weights=self.level_weights)
        logits = self.model(masked.inputs, condition, lengths)
        where = masked.loss_mask.reshape(size, -1)
        picked, targets = logits[where].float(), tokens[masked.loss_mask]
        token_loss = F.cross_entropy(picked, targets, label_smoothing=self.label_smoothing)
        length_loss, length_error = self._length_loss(condition, batch, ~drop_text)
        correct = (picked.argmax(-1) == targets).float()
        level_of = masked.levels[:, None, None].expand_as(masked.loss_mask)[masked.loss_mask]
        metrics = {"token_loss": token_loss.detach(), "length_loss": length_loss.detach(),
                   "masked_accuracy": correct.mean().detach(), "length_error": length_error}
        if bool((level_of == 0).any()):
            metrics["level0_accuracy"] = correct[level_of == 0].mean().detach()
        return LossOutput(token_loss + self.length_weight * length_loss, metrics, num_samples=size)

    def _length_loss(self, condition: SpeechCondition, batch: dict[str, Any],
                     keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """(loss, mean relative error of the predicted total length).

        Durations: MSE of ``log(1 + frames)`` over every real symbol (the prediction never sees the text dropout).
        Uniform: squared log ratio of predicted to true length over the samples that kept their text.
        """
        lengths = batch["lengths"].float()
        if self.model.config.alignment == "durations":
            mask = batch["symbol_mask"]
            target = batch["durations"].float().log1p()
            loss = (condition.log_duration - target).pow(2)[mask].mean()
            predicted = ((condition.log_duration.detach().exp() - 1).clamp(min=0) * mask).sum(1)
            return loss, (predicted / lengths - 1).abs().mean()
        if not bool(keep.any()):
            return condition.log_duration.new_zeros(()), 0.0
        log_ratio = (condition.num_symbols.float().clamp(min=1).log() + condition.log_duration[:, 0]
                     - lengths.log())[keep]
        return log_ratio.pow(2).mean(), log_ratio.detach().exp().sub(1).abs().mean()


# ----------------------------------------------------------------------------------------------------- the task
class SpeechTask(TrainTask):
    """Masked TTS on speech shards through a frozen audio codec; samples WAV + mel PNG while training."""

    name = "speech"

    def __init__(self, args: argparse.Namespace, overrides: dict[str, Any]):
        from mmgen.registry import load_pretrained

        if args.audio_tokenizer is None:
            raise InvalidArgumentError("--audio-tokenizer", "an audio codec folder (mmgen or EnCodec)")
        self.codec_dir, self.model_name = str(args.audio_tokenizer), args.model
        self.codec = load_pretrained(args.audio_tokenizer).eval().requires_grad_(False)
        self.batch_size, self.args = args.train_config.batch_size, args
        levels = int(overrides.get("num_levels", get_config(args.model).num_levels))
        if levels > self.codec.num_quantizers:
            raise InvalidArgumentError("num_levels", f"at most the codec's {self.codec.num_quantizers} levels", levels)
        self.token_dir, self.summary = self._tokens(args, levels)
        fitted = {"codebook_size": self.codec.codebook_size, "num_levels": levels,
                  "frame_rate": float(self.codec.frame_rate), "text_kind": self.summary["text_kind"],
                  "symbols": self.summary["symbols"], "voices": self.summary["voices"]}
        if self.summary.get("rates"):
            low, high = self.summary["rates"]
            fitted.update(rate_center=(low + high) / 2, rate_spread=max(1.0, (high - low) / 2))
        fitted["alignment"] = self._alignment(overrides.get("alignment"))
        self.overrides = {**overrides, **fitted}
        self.config = get_config(self.model_name, **self.overrides)

    def _alignment(self, asked: str | None) -> str:
        """``alignment=`` as asked, else ``"durations"`` when every training utterance has per-symbol durations."""
        timed, total = int(self.summary.get("durations") or 0), int(self.summary["counts"].get("train", 0))
        if asked is None:
            return "durations" if total and timed == total else "uniform"
        if asked == "durations" and timed < total:
            raise InvalidArgumentError("alignment", "'uniform' for this data: only "
                                       f"{timed} of {total} training utterances have per-symbol durations", asked)
        return asked

    def _tokens(self, args: argparse.Namespace, levels: int) -> tuple[Path, dict[str, Any]]:
        """Pre-tokenized shards: ``--data`` itself when it holds tokens.npy, else ``RUN/tokens`` (made once)."""
        data = Path(args.data)
        if (data / VOCAB_FILE).is_file():
            return data, json.loads((data / VOCAB_FILE).read_text())
        out = Path(args.out) / "tokens"
        if not (out / VOCAB_FILE).is_file():
            if os.environ.get("RANK", "0") != "0":
                raise DataError(f"{out}: pre-tokenize on one process first (run once without torchrun)")
            text_kind = args.text_kind or default_text_kind()
            pretokenize_speech(self.codec, args.data, out, levels=levels, text_kind=text_kind)
        summary = json.loads((out / VOCAB_FILE).read_text())
        if summary["levels"] < levels:
            raise DataError(f"{out}: holds {summary['levels']} levels, the model wants {levels}; delete it")
        return out, summary

    def build_module(self) -> nn.Module:
        a = self.args
        weights = [float(w) for w in a.level_weights.split(",")] if a.level_weights else None
        return SpeechTTSModule(create_model(self.model_name, **self.overrides), text_dropout=a.text_dropout,
                               style_dropout=a.style_dropout, prompt_prob=a.prompt_prob, level_weights=weights)

    def export_model(self, module: nn.Module) -> nn.Module:
        return module.model

    def build_stream(self, *, rank: int, world_size: int, seed: int, state: dict[str, Any] | None) -> ShardStream:
        c = self.config
        decoder = SpeechTokenDecoder(tuple(c.symbols), tuple(c.voices), c.num_levels, c.max_frames)
        return ShardStream(expand_shards(self.token_dir, split="train"), decoder, self.batch_size, seed=seed,
                           rank=rank, world_size=world_size, state=state, shuffle_buffer=1000, collate=collate_speech)

    def pipeline(self, model: nn.Module) -> Any:
        from mmgen.pipelines.speech import SpeechPipeline

        return SpeechPipeline(model, self.codec)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        """Held-out duration error of the length predictor (with each utterance's voice and rate)."""
        if not any(self.token_dir.glob("holdout-*.tar")):
            return {}
        from mmgen.data import read_samples

        c = model.config
        decoder = SpeechTokenDecoder(tuple(c.symbols), tuple(c.voices), c.num_levels, c.max_frames)
        batch = collate_speech(read_samples(expand_shards(self.token_dir, split="holdout"), decoder, limit=100))
        device = next(model.parameters()).device
        condition = model.encode_text(batch["symbols"].to(device), batch["symbol_mask"].to(device),
                                      batch["voice"].to(device), batch["rate"].to(device))
        error = (condition.predicted_frames().cpu() / batch["lengths"].float() - 1).abs()
        within = float((error <= 0.2).float().mean())
        return {"holdout_duration_error": float(error.mean()), "holdout_within_20pct": within}

    def sample_texts(self, count: int = 2) -> list[str]:
        """The first held-out sentences (else training sentences) of the tokenized data."""
        split = "holdout" if any(self.token_dir.glob("holdout-*.tar")) else "train"
        raws = (raw for shard in expand_shards(self.token_dir, split=split) for raw in iter_raw_samples(shard))
        return [json.loads(raw["json"])["text"] for _, raw in zip(range(count), raws)]

    def sample(self, model: nn.Module, step: int, out_dir: Path) -> list[Path]:
        from mmgen.data.audio_io import save_audio
        from mmgen.eval.audio_metrics import save_mel_png

        pipe, texts = self.pipeline(model), self.sample_texts()
        wavs = [_speak_capped(pipe, text).wav for text in texts]
        paths = [save_audio(out_dir / f"step_{step:08d}_{i}.wav", wav, pipe.sample_rate) for i, wav in enumerate(wavs)]
        return [*paths, save_mel_png(list(zip(texts, wavs)), pipe.sample_rate, out_dir / f"step_{step:08d}_mel.png")]

    def on_finish(self, model: nn.Module, out_dir: Path) -> list[Path]:
        return [self.pipeline(model).save_pretrained(out_dir / "pipeline")]

    def config_dict(self) -> dict[str, Any]:
        a = self.args
        return {"model": self.model_name, "audio_tokenizer": self.codec_dir, "tokens": str(self.token_dir),
                "text_dropout": a.text_dropout, "style_dropout": a.style_dropout, "prompt_prob": a.prompt_prob,
                "level_weights": a.level_weights, "overrides": {k: v for k, v in self.overrides.items()
                                                                if k not in ("symbols", "voices")}}


def _speak_capped(pipe: Any, text: str) -> Any:
    """Speak ``text`` (seed 0); cut to the model's longest duration when the predicted one is longer."""
    try:
        return pipe.speak(text, generator=torch.Generator().manual_seed(0))
    except InvalidArgumentError:  # longer than max_frames (tiny models early in training)
        limit = pipe.transformer.config.max_frames / pipe.frame_rate
        return pipe.speak(text, seconds=limit, generator=torch.Generator().manual_seed(0))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(model="tts-speech")
    parser.add_argument("--audio-tokenizer", type=Path, help="audio codec folder (encodes --data once into RUN/tokens)")
    parser.add_argument("--text-kind", choices=["phonemes", "characters"],
                        help="text front end (default: phonemes when espeak-ng is installed)")
    parser.add_argument("--text-dropout", type=float, default=0.1, help="fraction of steps without text (guidance)")
    parser.add_argument("--style-dropout", type=float, default=0.2, help="fraction of unknown voice / unknown rate")
    parser.add_argument("--prompt-prob", type=float, default=0.3, help="fraction of samples with a visible prefix")
    parser.add_argument("--level-weights", help="comma-separated chance of training each RVQ level (default equal)")


def build_task(args: argparse.Namespace, model_overrides: dict[str, Any]) -> SpeechTask:
    return SpeechTask(args, model_overrides)

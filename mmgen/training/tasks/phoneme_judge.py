"""Train the phoneme judge (a CTC phoneme recognizer) on speech shards, to score generated speech by its PER.

``--data`` holds ``mmgen data speech`` shards (``.wav`` + ``.json`` with an espeak-ng ``phonemes`` string). Labels
are the sounds of that string (:func:`mmgen.models.phoneme_judge.sound_symbols`); the vocabulary is the train
split's, saved in the model's config. Each batch is degraded per utterance (band limiting, gain, noise; then
SpecAugment masks on the features) and, with ``--audio-tokenizer``, a ``--codec-share`` of the batches is first
resynthesized by that frozen codec at a random number of levels in ``--codec-levels``, so the judge reads decoded
and generated audio as well as clean audio. Batches come from the exactly resumable shard stream, augmentation
from torch's RNG (saved in checkpoints), so ``--resume`` continues exactly. Evaluation: PER on held-out utterances,
clean and (with a codec) resynthesized at the fewest and the most levels; samples are transcripts.
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.cli.args import parse_range
from mmgen.data import ShardStream, decode_sample, expand_shards, read_samples
from mmgen.data.audio_augment import CodecResynthesis, degrade_speech, spec_augment
from mmgen.data.audio_io import resample
from mmgen.errors import DataError, InvalidArgumentError
from mmgen.models.phoneme_judge import PhonemeJudge, ctc_greedy_decode, sound_symbols
from mmgen.registry import create_model, get_config
from mmgen.training.task import LossOutput, TrainTask


# ---------------------------------------------------------------------------------------------------- data
def _metas(shard: str) -> list[tuple[str, dict[str, Any]]]:
    """(member name, parsed .json) of every sample of a shard, without reading the audio."""
    with tarfile.open(shard) as tar:
        return [(m.name, json.loads(tar.extractfile(m).read())) for m in tar if m.isfile() and m.name.endswith(".json")]


def scan_symbols(shards: list[str]) -> tuple[str, ...]:
    """The sorted sound symbols of every utterance's ``phonemes`` in ``shards``.

    Raises:
        DataError: some utterance has no ``phonemes`` (the shards were not written by ``mmgen data speech``).
    """
    symbols: set[str] = set()
    missing, total, example = 0, 0, ""
    for shard in shards:
        for name, meta in _metas(shard):
            total += 1
            if not isinstance(meta.get("phonemes"), str) or not sound_symbols(meta["phonemes"]):
                missing, example = missing + 1, example or f"{Path(shard).name}:{name}"
                continue
            symbols.update(sound_symbols(meta["phonemes"]))
    if missing or not total:
        raise DataError(f"{missing} of {total} utterances have no 'phonemes' in their .json (first: {example or '-'}); "
                        "the phoneme judge trains on espeak-ng speech shards (mmgen data speech)")
    return tuple(sorted(symbols))


class PhonemeUtterances:
    """Decoder: raw sample → ``{"key": str, "audio": float [T] (mono, at sample_rate), "phonemes": str,
    "labels": Long [L]}`` (``labels`` only with ``symbols``; ids ``1..``, 0 is the CTC blank)."""

    def __init__(self, sample_rate: int, symbols: tuple[str, ...] | None = None):
        self.sample_rate = sample_rate
        self.ids = {s: i + 1 for i, s in enumerate(symbols)} if symbols is not None else None

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        sample = decode_sample(raw)
        phonemes = (sample.get("meta") or {}).get("phonemes")
        if "audio" not in sample or not isinstance(phonemes, str):
            raise ValueError(f"sample {sample['key']!r} lacks audio or a 'phonemes' string")
        wav = resample(sample["audio"].mean(0), sample["sample_rate"], self.sample_rate).clamp(-1, 1)
        out = {"key": sample["key"], "audio": wav, "phonemes": phonemes}
        if self.ids is not None:
            out["labels"] = torch.tensor([self.ids[s] for s in sound_symbols(phonemes)], dtype=torch.long)
        return out


def collate_utterances(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad: ``audio [B, T]`` + ``lengths [B]``, ``labels [B, L]`` + ``label_lengths [B]``, ``keys`` (list)."""
    lengths = torch.tensor([s["audio"].shape[0] for s in samples])
    label_lengths = torch.tensor([s["labels"].shape[0] for s in samples])
    audio = torch.zeros(len(samples), int(lengths.max()))
    labels = torch.zeros(len(samples), int(label_lengths.max()), dtype=torch.long)
    for row, sample in enumerate(samples):
        audio[row, : lengths[row]] = sample["audio"]
        labels[row, : label_lengths[row]] = sample["labels"]
    return {"audio": audio, "lengths": lengths, "labels": labels, "label_lengths": label_lengths,
            "keys": [s["key"] for s in samples]}


# ------------------------------------------------------------------------------------------------ the module
class PhonemeJudgeModule(nn.Module):
    """One step: (codec resynthesis) → degradation → features → SpecAugment → CTC loss; logs the batch's greedy PER.

    The codec is held outside the module's parameters (it is frozen and not part of checkpoints); each training
    utterance is encoded once and its codes cached (:class:`~mmgen.data.audio_augment.CodecResynthesis`)."""

    def __init__(self, model: PhonemeJudge, codec: Any = None, codec_share: float = 0.5,
                 codec_levels: tuple[int, int] = (1, 3), augment: bool = True):
        super().__init__()
        self.model = model  # the codec lives in a plain object, not a submodule: no checkpoint, DDP or EMA of it
        self.resynthesis = None if codec is None else CodecResynthesis(codec, model.config.sample_rate,
                                                                       codec_levels[1])
        self.codec_share, self.codec_levels, self.augment = codec_share, codec_levels, augment

    def _corrupt(self, wav: torch.Tensor, lengths: torch.Tensor, keys: list[str] | None) -> tuple[torch.Tensor, float]:
        """(augmented wav [B, T], codec levels used or 0)."""
        rate, levels = self.model.config.sample_rate, 0
        if self.resynthesis is not None and float(torch.rand(())) < self.codec_share:
            low, high = self.codec_levels
            levels = int(torch.randint(low, high + 1, ()))
            self.resynthesis.codec.to(wav.device)
            wav = self.resynthesis(wav, lengths, levels, keys)
        return degrade_speech(wav, lengths, rate), float(levels)

    def forward(self, batch: dict[str, Any], step: int) -> LossOutput:
        from mmgen.eval.intelligibility import edit_distance

        wav, lengths, labels = batch["audio"], batch["lengths"], batch["labels"]
        levels = 0.0
        if self.training and self.augment:
            wav, levels = self._corrupt(wav, lengths, batch.get("keys"))
        features, frames = self.model.features(wav, lengths)
        if self.training and self.augment:
            features = spec_augment(features, frames, frame_rate=self.model.config.sample_rate
                                    / self.model.config.hop_length)
        out = self.model.forward_features(features, frames)
        loss = F.ctc_loss(out.log_probs.transpose(0, 1), labels, out.lengths, batch["label_lengths"],
                          blank=0, zero_infinity=True)
        hyps = ctc_greedy_decode(out.log_probs.detach(), out.lengths)
        refs = [row[:n].tolist() for row, n in zip(labels.cpu(), batch["label_lengths"].tolist())]
        per = sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / max(1, sum(len(r) for r in refs))
        return LossOutput(loss, {"per": per, "codec_levels": levels}, num_samples=wav.shape[0])


# -------------------------------------------------------------------------------------------------- the task
class PhonemeJudgeTask(TrainTask):
    """Speech shards in, the phoneme judge out; held-out PER, clean and through the codec."""

    name = "phoneme-judge"

    def __init__(self, data: str, model_name: str, overrides: dict[str, Any], *, batch_size: int,
                 holdout: str | None = None, audio_tokenizer: str | None = None, codec_share: float = 0.5,
                 codec_levels: tuple[int, int] = (1, 3), eval_samples: int = 100):
        folder = Path(data).is_dir()
        self.train_shards = expand_shards(data, split="train" if folder else None)
        if holdout:
            self.holdout_shards = expand_shards(holdout, split="holdout" if Path(holdout).is_dir() else None)
        else:
            self.holdout_shards = expand_shards(data, split="holdout") if folder and any(
                Path(data).glob("holdout-*.tar")) else []
        symbols = scan_symbols(self.train_shards)
        self.model_name, self.overrides = model_name, {**overrides, "symbols": list(symbols)}
        self.config = get_config(model_name, **self.overrides)
        self.batch_size, self.eval_samples = batch_size, eval_samples
        self.codec_dir, self.codec, self.codec_share = audio_tokenizer, None, codec_share
        self.codec_levels = codec_levels
        if audio_tokenizer is not None:
            from mmgen.registry import load_pretrained

            self.codec = load_pretrained(audio_tokenizer).eval().requires_grad_(False)
            if codec_levels[1] > self.codec.num_quantizers:
                raise InvalidArgumentError("--codec-levels", f"at most the codec's {self.codec.num_quantizers} "
                                           "levels", f"{codec_levels[0]}-{codec_levels[1]}")
        self._holdout: dict[str, Any] | None = None

    def build_module(self) -> nn.Module:
        return PhonemeJudgeModule(create_model(self.model_name, **self.overrides), self.codec, self.codec_share,
                                  self.codec_levels)

    def export_model(self, module: nn.Module) -> nn.Module:
        return module.model

    def build_stream(self, *, rank: int, world_size: int, seed: int, state: dict[str, Any] | None) -> ShardStream:
        decoder = PhonemeUtterances(self.config.sample_rate, tuple(self.config.symbols))
        return ShardStream(self.train_shards, decoder, self.batch_size, collate_utterances, seed=seed, rank=rank,
                           world_size=world_size, state=state, shuffle_buffer=1000)

    def holdout(self) -> dict[str, Any]:
        """``{"audio": [[T], ...], "phonemes": [...], "codec@q": resynthesized audio}``, made once."""
        if self._holdout is None:
            samples = read_samples(self.holdout_shards, PhonemeUtterances(self.config.sample_rate),
                                   limit=self.eval_samples)
            if not samples:
                raise DataError(f"no usable utterance in the held-out shards {self.holdout_shards[:3]}")
            wavs = [s["audio"] for s in samples]
            self._holdout = {"audio": wavs, "phonemes": [s["phonemes"] for s in samples]}
            if self.codec is not None:
                resynthesis = CodecResynthesis(self.codec, self.config.sample_rate, self.codec_levels[1])
                for levels in sorted(set(self.codec_levels)):
                    self._holdout[f"codec@{levels}"] = [
                        resynthesis(w[None], torch.tensor([len(w)]), levels, [str(i)])[0] for i, w in enumerate(wavs)]
        return self._holdout

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        from mmgen.eval.intelligibility import phoneme_error_rate

        if not self.holdout_shards or self.eval_samples <= 0:
            return {}
        data, rate = self.holdout(), self.config.sample_rate
        metrics = {"per": phoneme_error_rate(model, data["audio"], rate, data["phonemes"]).per}
        for key in (k for k in data if k.startswith("codec@")):
            metrics[f"per_codec_q{key[6:]}"] = phoneme_error_rate(model, data[key], rate, data["phonemes"]).per
        return metrics

    def sample(self, model: nn.Module, step: int, out_dir: Path) -> list[Path]:
        """``step_N_transcripts.txt``: reference and judged symbols of the first held-out utterances."""
        from mmgen.eval.intelligibility import phoneme_error_rate

        if not self.holdout_shards or self.eval_samples <= 0:
            return []
        data = self.holdout()
        result = phoneme_error_rate(model, data["audio"][:8], self.config.sample_rate, data["phonemes"][:8])
        lines = [f"ref {ref}\nhyp {hyp}\nper {per:.3f}\n" for ref, hyp, per in
                 zip(result.references, result.hypotheses, result.item_per)]
        path = out_dir / f"step_{step:08d}_transcripts.txt"
        path.write_text("\n".join(lines), encoding="utf-8")
        return [path]

    def config_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "overrides": self.overrides, "train_shards": self.train_shards,
                "holdout_shards": self.holdout_shards, "audio_tokenizer": self.codec_dir,
                "codec_share": self.codec_share, "codec_levels": list(self.codec_levels),
                "eval_samples": self.eval_samples}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(model="phoneme-judge")
    parser.add_argument("--holdout", default=None,
                        help="held-out shards (default: DATA's holdout-*.tar if DATA is a folder)")
    parser.add_argument("--audio-tokenizer", default=None,
                        help="frozen audio codec folder: a share of batches is resynthesized through it")
    parser.add_argument("--codec-share", type=float, default=0.5,
                        help="share of batches resynthesized by the codec (default: %(default)s)")
    parser.add_argument("--codec-levels", default="1-3",
                        help="codec quantizer levels, MIN-MAX, drawn per batch (default: %(default)s)")
    parser.add_argument("--eval-samples", type=int, default=100,
                        help="held-out utterances scored at each evaluation (default: %(default)s)")


def build_task(args: argparse.Namespace, model_overrides: dict[str, Any]) -> PhonemeJudgeTask:
    """``args``: the parsed CLI namespace (``data``, ``model``, ``train_config`` and this module's flags)."""
    if not 0.0 <= args.codec_share <= 1.0:
        raise InvalidArgumentError("--codec-share", "a number in [0, 1]", args.codec_share)
    levels = parse_range(args.codec_levels, int, 1, "--codec-levels", "quantizer levels")
    return PhonemeJudgeTask(args.data, args.model, model_overrides, batch_size=args.train_config.batch_size,
                            holdout=args.holdout, audio_tokenizer=args.audio_tokenizer, codec_share=args.codec_share,
                            codec_levels=levels, eval_samples=args.eval_samples)

"""Encode+decode speed of mmgen's AudioTokenizer vs the ``encodec`` package's EncodecModel of the same size.

    .venv/bin/python benchmarks/audio_codec.py                          # both rows below, 4 s of audio
    .venv/bin/python benchmarks/audio_codec.py --seconds 8 --repeats 7 --model assets/codec-speech

"Same size" means the same architecture hyper-parameters on both sides, each model built with random weights
(``encodec.EncodecModel`` with ``pretrained=False``, i.e. its ``SEANetEncoder``/``SEANetDecoder`` +
``ResidualVectorQuantizer``): filters, ratios, LSTM layers, latent dimension, codebook size, causal or not, and the
same number of RVQ levels. A codec with mmgen's inverse-STFT decoder (``decoder="istft"``, which EnCodec does not
have) is compared with the EnCodec model of the same hyper-parameters whose filter count gives the parameter count
closest to the mmgen codec's (the ``params`` column shows both). Rows:

* ``encodec-24khz``: EnCodec's own 24 kHz architecture (32 filters, 2-layer LSTM, 128-d latents), at 6 kbit/s.
* the shipped speech codec (``assets/codec-speech`` or the ``audio-codec-speech-16k`` config): SEANet encoder with
  16 filters, inverse-STFT decoder, 8-d latents, 1024 codes, at 3 kbit/s (6 levels).

Both sides run wav → codes → wav in fp32 on CPU; calls alternate (A, B, A, B, ...) and the median is reported, so
background load on shared machines hits both alike. ``ratio`` = mmgen speed / encodec speed (> 1: mmgen faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmgen.registry import create_model, load_pretrained

DEFAULT_MODELS = ("encodec-24khz", "codec-speech")
_BANDWIDTH = {"encodec-24khz": 6.0}


def build_mmgen(spec: str) -> Any:
    """A registered audio config name, ``codec-speech`` (the shipped asset, else its config) or a folder."""
    shipped = Path(__file__).resolve().parent.parent / "assets" / "codec-speech"
    if spec == "codec-speech":
        if (shipped / "config.json").is_file():
            return load_pretrained(shipped).eval()
        spec = "audio-codec-speech-16k"
    if Path(spec).is_dir():
        return load_pretrained(spec).eval()
    torch.manual_seed(0)
    return create_model(spec, kmeans_init=False).eval()


def build_encodec_like(tokenizer: Any) -> torch.nn.Module:
    """The ``encodec`` package's EncodecModel with the same hyper-parameters as ``tokenizer`` (random weights);
    for an inverse-STFT codec, the filter count whose parameter count is closest to ``tokenizer``'s."""
    cfg = tokenizer.config
    if getattr(cfg, "decoder", "seanet") == "seanet":
        return _encodec_model(cfg, cfg.num_filters, tokenizer)
    target = tokenizer.num_parameters()
    sizes = {filters: sum(p.numel() for p in _encodec_model(cfg, filters, tokenizer).parameters())
             for filters in range(8, 65, 2)}
    return _encodec_model(cfg, min(sizes, key=lambda filters: abs(sizes[filters] - target)), tokenizer)


def _encodec_model(cfg: Any, filters: int, tokenizer: Any) -> torch.nn.Module:
    from encodec import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    common = dict(channels=cfg.channels, dimension=cfg.latent_dim, n_filters=filters,
                  n_residual_layers=cfg.num_residual_layers, ratios=list(cfg.ratios), norm=cfg.norm,
                  kernel_size=cfg.kernel_size, last_kernel_size=cfg.last_kernel_size,
                  residual_kernel_size=cfg.residual_kernel_size, dilation_base=cfg.dilation_growth_rate,
                  causal=cfg.causal, pad_mode=cfg.pad_mode, true_skip=not cfg.conv_shortcut, compress=cfg.compress,
                  lstm=cfg.lstm_layers)
    torch.manual_seed(0)
    encoder, decoder = SEANetEncoder(**common), SEANetDecoder(**common)
    quantizer = ResidualVectorQuantizer(dimension=cfg.latent_dim, n_q=cfg.num_quantizers, bins=cfg.codebook_size)
    bandwidths = [tokenizer.kbps(q) for q in range(1, cfg.num_quantizers + 1)]
    model = EncodecModel(encoder, decoder, quantizer, bandwidths, cfg.sample_rate, cfg.channels,
                         normalize=cfg.normalize, name="same-size")
    return model.eval()


def roundtrips(tokenizer: Any, encodec: torch.nn.Module, kbps: float) -> dict[str, Callable[[torch.Tensor], Any]]:
    """wav [B, C, T] → codes → wav for both models at the same number of RVQ levels."""
    levels = tokenizer.quantizers_for_bandwidth(kbps)
    encodec.set_target_bandwidth(tokenizer.kbps(levels))

    def ours(wav: torch.Tensor) -> torch.Tensor:
        return tokenizer.decode(tokenizer.encode(wav, levels))

    def theirs(wav: torch.Tensor) -> torch.Tensor:
        return encodec.decode(encodec.encode(wav))

    return {"mmgen": ours, "encodec": theirs}


def time_alternating(fns: dict[str, Callable[[torch.Tensor], Any]], wav: torch.Tensor,
                     repeats: int) -> dict[str, float]:
    """Median seconds per call of each function (one warm-up call each, then alternating calls)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn(wav)
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(wav)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def codec_speed_table(models: tuple[str, ...] = DEFAULT_MODELS, *, seconds: float = 4.0, batch: int = 1,
                      repeats: int = 5) -> list[dict[str, Any]]:
    """One row per model: parameters of both sides, levels, kbit/s, realtime factors (audio s / wall s) and the
    speed ratio mmgen / encodec (> 1: mmgen faster). ``models``: config names, ``codec-speech`` or folders."""
    rows = []
    for spec in models:
        tokenizer = build_mmgen(spec)
        encodec = build_encodec_like(tokenizer)
        kbps = _BANDWIDTH.get(spec, 3.0)
        wav = torch.randn(batch, tokenizer.channels, int(seconds * tokenizer.sample_rate),
                          generator=torch.Generator().manual_seed(0)).mul(0.1).clamp(-1, 1)
        secs = time_alternating(roundtrips(tokenizer, encodec, kbps), wav, repeats)
        audio_seconds = batch * seconds
        levels = tokenizer.quantizers_for_bandwidth(kbps)
        rows.append({"model": spec, "sample_rate": tokenizer.sample_rate, "levels": levels,
                     "kbps": tokenizer.kbps(levels), "mmgen_params": tokenizer.num_parameters(),
                     "encodec_params": sum(p.numel() for p in encodec.parameters()),
                     "mmgen_realtime": audio_seconds / secs["mmgen"],
                     "encodec_realtime": audio_seconds / secs["encodec"],
                     "ratio": secs["encodec"] / secs["mmgen"]})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table."""
    lines = [f"{'model':<18}{'rate':>7}{'kbps':>6}{'params mmgen/encodec':>23}{'mmgen x RT':>12}"
             f"{'encodec x RT':>14}{'ratio':>8}"]
    for row in rows:
        params = f"{row['mmgen_params'] / 1e6:.2f}M/{row['encodec_params'] / 1e6:.2f}M"
        lines.append(f"{row['model']:<18}{row['sample_rate']:>7}{row['kbps']:>6g}{params:>23}"
                     f"{row['mmgen_realtime']:>12.1f}{row['encodec_realtime']:>14.1f}{row['ratio']:>8.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="config name, 'codec-speech' or folder (repeatable)")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio length per item")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); wav → codes → wav, fp32, "
          f"{args.batch} x {args.seconds:g} s; x RT = seconds of audio per wall second")
    rows = codec_speed_table(tuple(args.model or DEFAULT_MODELS), seconds=args.seconds, batch=args.batch,
                             repeats=args.repeats)
    print(format_table(rows))


if __name__ == "__main__":
    main()

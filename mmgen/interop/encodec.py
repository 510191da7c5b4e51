"""EnCodec interop: a transformers ``EncodecModel`` (module or saved folder) as an mmgen :class:`AudioTokenizer`.

mmgen's SEANet modules use EnCodec's layout and parameter names, so the conversion is a config translation, a key
copy for the encoder/decoder and a codebook copy for the RVQ. Codes are identical (same nearest-neighbour
arithmetic) and decoded audio matches to float rounding, including RMS normalization (``normalize``) and chunked
encoding with overlap-add (``chunk_length_s``/``overlap``, the 48 kHz models)::

    tok = AudioTokenizer.from_encodec("path/to/encodec_folder")   # or mmgen.load_pretrained(folder)
    codes = tok.encode_with_scales(wav, tok.quantizers_for_bandwidth(6.0))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmgen.errors import CheckpointError

if TYPE_CHECKING:
    from transformers import EncodecConfig, EncodecModel

    from mmgen.tokenizers.audio import AudioTokenizer, AudioTokenizerConfig

ENCODEC_MODEL_TYPE = "encodec"


def is_encodec_folder(directory: str | Path) -> bool:
    """True when ``directory/config.json`` was written by transformers for an ``EncodecModel``."""
    from mmgen.pretrained import read_config_json

    try:
        data = read_config_json(Path(directory))
    except CheckpointError:
        return False
    return data.get("model_type") == ENCODEC_MODEL_TYPE and "mmgen_version" not in data


def config_from_encodec(config: EncodecConfig) -> AudioTokenizerConfig:
    """Translate an ``EncodecConfig`` into the equivalent :class:`AudioTokenizerConfig`."""
    from mmgen.tokenizers.audio import AudioTokenizerConfig

    if config.codebook_dim != config.hidden_size:
        raise CheckpointError(f"EnCodec codebook_dim {config.codebook_dim} != hidden_size {config.hidden_size} "
                              "is not supported")
    return AudioTokenizerConfig(
        sample_rate=config.sampling_rate, channels=config.audio_channels, num_filters=config.num_filters,
        ratios=tuple(config.upsampling_ratios), num_residual_layers=config.num_residual_layers,
        kernel_size=config.kernel_size, last_kernel_size=config.last_kernel_size,
        residual_kernel_size=config.residual_kernel_size, dilation_growth_rate=config.dilation_growth_rate,
        compress=config.compress, causal=config.use_causal_conv, pad_mode=config.pad_mode, norm=config.norm_type,
        conv_shortcut=config.use_conv_shortcut, lstm_layers=config.num_lstm_layers,
        trim_right_ratio=config.trim_right_ratio, latent_dim=config.hidden_size,
        codebook_size=config.codebook_size, num_quantizers=config.num_quantizers, normalize=config.normalize,
        chunk_length_s=config.chunk_length_s, overlap=config.overlap, kmeans_init=False)


def load_encodec(source: str | Path | Any) -> EncodecModel:
    """A transformers ``EncodecModel`` from a module (returned as is) or a saved folder (loaded offline)."""
    if isinstance(source, torch.nn.Module):
        return source
    from transformers import EncodecModel

    directory = Path(source)
    if not is_encodec_folder(directory):
        raise CheckpointError(f"{directory}: not a transformers EncodecModel folder (config.json model_type "
                              f"{ENCODEC_MODEL_TYPE!r} + weights)")
    try:
        return EncodecModel.from_pretrained(str(directory), local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory}: could not load the EncodecModel ({exc})") from None


def tokenizer_from_encodec(source: str | Path | Any, **_: Any) -> AudioTokenizer:
    """Convert a transformers ``EncodecModel`` (module or folder) into an mmgen :class:`AudioTokenizer` (fp32)."""
    from mmgen.tokenizers.audio import AudioTokenizer

    encodec = load_encodec(source)
    tokenizer = AudioTokenizer(config_from_encodec(encodec.config))
    state = {k: v for k, v in encodec.state_dict().items() if not k.startswith("quantizer.")}
    own = {k: v for k, v in tokenizer.state_dict().items() if not k.startswith("quantizer.")}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"EnCodec weights do not map onto the SEANet layout: missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}")
    tokenizer.load_state_dict({**tokenizer.state_dict(), **state})
    codebooks = torch.stack([layer.codebook.embed.detach().float() for layer in encodec.quantizer.layers])
    with torch.no_grad():
        tokenizer.quantizer.set_codebooks(codebooks)
    return tokenizer.eval()


__all__ = ["ENCODEC_MODEL_TYPE", "config_from_encodec", "is_encodec_folder", "load_encodec",
           "tokenizer_from_encodec"]

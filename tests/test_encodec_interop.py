"""EnCodec interop: transformers EncodecModel folders load as mmgen AudioTokenizers with identical codes and audio."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmgen.errors import CheckpointError
from mmgen.registry import load_pretrained
from mmgen.tokenizers.audio import AudioTokenizer

transformers = pytest.importorskip("transformers")

CONFIGS = {
    # EnCodec 24 kHz style: causal, weight norm, reflect padding, LSTM, no normalization, no chunking.
    "causal-24k": dict(sampling_rate=24000, num_filters=4, upsampling_ratios=[4, 4], hidden_size=8,
                       codebook_size=16, num_lstm_layers=1, target_bandwidths=[12.0, 24.0], use_causal_conv=True),
    # EnCodec 48 kHz style: stereo, non-causal, time group norm, RMS normalization, 1-chunk-per-window encoding
    # with overlap-add (chunk 10 ms, 10% overlap here to keep the model tiny), two residual layers.
    "normalized-48k": dict(sampling_rate=48000, audio_channels=2, num_filters=4, upsampling_ratios=[4, 4],
                           hidden_size=8, codebook_size=16, num_lstm_layers=1, num_residual_layers=2,
                           target_bandwidths=[24.0, 48.0], use_causal_conv=False, norm_type="time_group_norm",
                           normalize=True, chunk_length_s=0.01, overlap=0.1),
}


def _random_encodec(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = transformers.EncodecModel(transformers.EncodecConfig(**CONFIGS[name])).eval()
    for layer in model.quantizer.layers:  # transformers initialises codebooks to zeros
        layer.codebook.embed.normal_()
    return model


def _flat_codes(encoded) -> torch.Tensor:
    """transformers' [chunks, B, q, n_chunk] codes (last chunk padded) → [B, q, n] concatenated over time."""
    chunks = list(encoded.audio_codes)
    if encoded.last_frame_pad_length:
        chunks[-1] = chunks[-1][..., : -encoded.last_frame_pad_length]
    return torch.cat(chunks, dim=-1)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_saved_encodec_folder_matches_transformers(name: str, tmp_path: Path):
    reference = _random_encodec(name)
    reference.save_pretrained(tmp_path / name)
    tokenizer = load_pretrained(tmp_path / name)
    assert isinstance(tokenizer, AudioTokenizer)
    cfg = reference.config
    assert tokenizer.num_quantizers == cfg.num_quantizers and tokenizer.hop_length == cfg.hop_length
    wav = torch.randn(2, cfg.audio_channels, 1700, generator=torch.Generator().manual_seed(1)) * 0.3
    for bandwidth in cfg.target_bandwidths:
        with torch.no_grad():
            encoded = reference.encode(wav, bandwidth=bandwidth)
            audio = reference.decode(encoded.audio_codes, encoded.audio_scales,
                                     last_frame_pad_length=encoded.last_frame_pad_length)[0]
        codes = tokenizer.encode_with_scales(wav, tokenizer.quantizers_for_bandwidth(bandwidth))
        assert torch.equal(codes.tokens, _flat_codes(encoded))
        ours = tokenizer.decode(codes.tokens, codes.scales)
        assert ours.shape == audio.shape
        torch.testing.assert_close(ours, audio, atol=1e-5, rtol=0)
        if cfg.normalize:
            expected = torch.cat([s.view(-1, 1) for s in encoded.audio_scales], dim=1)
            torch.testing.assert_close(codes.scales, expected)


def test_converted_model_saves_as_mmgen_and_reloads(tmp_path: Path):
    tokenizer = AudioTokenizer.from_encodec(_random_encodec("causal-24k"))
    tokenizer.save_pretrained(tmp_path / "mmgen")
    again = load_pretrained(tmp_path / "mmgen")
    wav = torch.randn(1, 1, 900) * 0.2
    assert torch.equal(tokenizer.encode(wav), again.encode(wav))
    torch.testing.assert_close(tokenizer.decode(tokenizer.encode(wav)), again.decode(again.encode(wav)))


def test_not_an_encodec_folder(tmp_path: Path):
    from mmgen.interop.encodec import load_encodec

    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="not a transformers EncodecModel folder"):
        load_encodec(tmp_path)

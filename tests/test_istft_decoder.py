"""The Vocos-style inverse-STFT codec decoder (``decoder="istft"``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmgen.errors import InvalidArgumentError
from mmgen.registry import create_model, load_pretrained
from mmgen.tokenizers.istft_decoder import ISTFT


@pytest.mark.parametrize(("n_fft", "hop"), [(1280, 320), (64, 16), (40, 20)])
def test_istft_inverts_a_same_padded_stft(n_fft: int, hop: int):
    wav = torch.randn(2, 9 * hop)
    pad = (n_fft - hop) // 2
    spec = torch.stft(F.pad(wav, (pad, pad)), n_fft, hop, window=torch.hann_window(n_fft), center=False,
                      return_complex=True)
    assert spec.shape[-1] == 9  # one frame per hop: n frames → n · hop samples
    torch.testing.assert_close(ISTFT(n_fft, hop)(spec), wav, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("n_fft", "hop"), [(65, 16), (20, 20)])
def test_istft_rejects_uninvertible_geometry(n_fft: int, hop: int):
    with pytest.raises(InvalidArgumentError, match="istft_n_fft"):
        ISTFT(n_fft, hop)


def test_codec_with_istft_decoder_round_trips_and_trains(tmp_path: Path):
    torch.manual_seed(0)
    codec = create_model("audio-codec-tiny", decoder="istft", istft_dim=16, istft_layers=2, kmeans_init=False)
    wav = 0.1 * torch.randn(2, 1, 3333)
    out = codec(wav)
    assert out.reconstruction.shape == wav.shape
    out.reconstruction.square().mean().backward()
    assert codec.encoder.layers[0].conv.parametrizations.weight.original1.grad is not None
    assert codec.last_layer is codec.decoder.out.weight and codec.last_layer.grad is not None
    codec.eval()
    tokens = codec.encode(wav)
    assert codec.decode(tokens).shape == (2, 1, tokens.shape[-1] * codec.hop_length)
    codec.save_pretrained(tmp_path / "codec")
    again = load_pretrained(tmp_path / "codec")
    assert again.config.decoder == "istft"
    torch.testing.assert_close(again.decode(tokens), codec.decode(tokens))


def test_unknown_decoder_is_a_clear_error():
    with pytest.raises(InvalidArgumentError, match="decoder"):
        create_model("audio-codec-tiny", decoder="wavenet")

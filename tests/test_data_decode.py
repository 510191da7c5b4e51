"""Decoders (image modes, labels, text, json, audio) and collation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.data.decode import collate_samples, decode_audio, decode_image, decode_sample, sample_generator


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_grayscale_stays_one_channel_and_color_is_rgb():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = decode_image(_png(Image.fromarray(gray)))
    assert out.shape == (1, 3, 4) and out.dtype == torch.uint8
    assert torch.equal(out[0], torch.from_numpy(gray))
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    assert torch.equal(decode_image(_png(Image.fromarray(rgb))), torch.from_numpy(rgb).permute(2, 0, 1))


def test_rgba_composited_on_white_and_palette_to_rgb():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; the rest transparent
    out = decode_image(_png(Image.fromarray(rgba, "RGBA")))
    assert out.shape == (3, 2, 2)
    assert out[:, 0, 0].tolist() == [255, 0, 0] and out[:, 1, 1].tolist() == [255, 255, 255]
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    palette.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    assert decode_image(_png(palette))[:, 0, 1].tolist() == [40, 50, 60]


def test_sixteen_bit_grayscale_scaled_to_uint8():
    wide = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    out = decode_image(_png(wide))
    assert out.shape == (1, 1, 2) and out.flatten().tolist() == [0, 255]


def test_decode_sample_fields_and_errors():
    gray = Image.fromarray(np.zeros((2, 3), dtype=np.uint8))
    raw = {"__key__": "k1", "__url__": "x.tar", "png": _png(gray), "cls": b" 7\n", "txt": b"a cat \n",
           "json": b'{"w": 3}'}
    sample = decode_sample(raw)
    assert sample["key"] == "k1" and sample["label"] == 7 and sample["text"] == "a cat" and sample["meta"] == {"w": 3}
    assert sample["image"].shape == (1, 2, 3)
    with pytest.raises(ValueError, match="no known field"):
        decode_sample({"__key__": "k2", "xyz": b""})
    with pytest.raises(OSError):
        decode_sample({"__key__": "k3", "png": _png(gray)[:40]})  # truncated PNG
    with pytest.raises(ValueError):
        decode_sample({"__key__": "k4", "json": b"[1, 2]"})


def test_audio_decodes_to_channels_first_float():
    import soundfile as sf

    wave = (np.sin(np.linspace(0, 20, 800)) * 0.5).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([wave, -wave], 1), 16000, format="WAV", subtype="PCM_16")
    audio, rate = decode_audio(buffer.getvalue())
    assert rate == 16000 and audio.shape == (2, 800) and audio.dtype == torch.float32
    assert torch.allclose(audio[0], torch.from_numpy(wave), atol=1e-3)
    sample = decode_sample({"__key__": "a", "flac": buffer.getvalue()})  # soundfile sniffs the real format
    assert sample["sample_rate"] == 16000 and sample["audio"].shape == (2, 800)


def test_collate_stacks_equal_shapes_and_keeps_lists_otherwise():
    samples = [{"key": f"k{i}", "image": torch.zeros(1, 4, 4), "label": i, "text": f"t{i}"} for i in range(3)]
    batch = collate_samples(samples)
    assert batch["image"].shape == (3, 1, 4, 4)
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [0, 1, 2]
    assert batch["text"] == ["t0", "t1", "t2"] and batch["key"] == ["k0", "k1", "k2"]
    samples[1]["image"] = torch.zeros(1, 5, 4)
    del samples[2]["text"]
    batch = collate_samples(samples)
    assert isinstance(batch["image"], list) and len(batch["image"]) == 3
    assert batch["text"] == ["t0", "t1", None]


def test_sample_generator_is_seeded_from_the_raw_sample():
    first = torch.rand(3, generator=sample_generator({"__seed__": 123}))
    assert torch.equal(first, torch.rand(3, generator=sample_generator({"__seed__": 123})))
    assert not torch.equal(first, torch.rand(3, generator=sample_generator({"__seed__": 124})))

"""Pre-tokenized shards: encode an image dataset once so token models train without the tokenizer in the loop.

Each output sample keeps the key, ``.cls`` label, ``.txt`` caption and ``.json`` metadata of its source and adds
``tokens.npy`` (int16/int32 ``[h, w]``), which :func:`mmgen.training.tasks.maskgit.decode_image_or_tokens` reads.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.data import read_samples
from mmgen.data.writer import ShardWriter


def _encode_batch(tokenizer: Any, images: list[torch.Tensor]) -> np.ndarray:
    batch = torch.stack(images).float() / 127.5 - 1.0
    tokens = tokenizer.encode(batch).cpu().numpy()
    return tokens.astype(np.int16 if tokenizer.codebook_size <= 32767 else np.int32)


def tokenize_shards(tokenizer: Any, source: str | Path, out: str | Path, *, splits: tuple[str, ...] = ("train",
                    "holdout"), batch_size: int = 128, samples_per_shard: int = 5000) -> dict[str, int]:
    """Write ``{out}/{split}-*.tar`` with ``tokens.npy`` per sample for each split present in ``source``."""
    counts: dict[str, int] = {}
    for split in splits:
        try:
            samples = read_samples(source, split=split)
        except Exception:  # a split that is not there
            continue
        with ShardWriter(out, split, samples_per_shard, source=f"tokens of {source}") as writer:
            for start in range(0, len(samples), batch_size):
                chunk = samples[start:start + batch_size]
                for sample, tokens in zip(chunk, _encode_batch(tokenizer, [s["image"] for s in chunk])):
                    buffer = io.BytesIO()
                    np.save(buffer, tokens, allow_pickle=False)
                    fields: dict[str, Any] = {"tokens.npy": buffer.getvalue()}
                    for name, ext in (("label", "cls"), ("text", "txt"), ("meta", "json")):
                        if sample.get(name) is not None:
                            fields[ext] = sample[name]
                    writer.write(sample["key"], fields)
        counts[split] = writer.count
    return counts

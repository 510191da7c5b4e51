"""mmgen.data: webdataset shards in and out, the resumable training stream, decoders, built-in datasets.

Reading::

    stream = ShardStream("data/mnist", decode_sample, batch_size=64, split="train", seed=0)
    loader = make_loader(stream, num_workers=2)           # batches come whole from one worker
    position = StreamPosition()
    for batch in loader:                                   # batch["image"]: uint8 [B, 1, 28, 28]
        position.update(batch)                             # save position.state_dict() with the checkpoint
    # resume: ShardStream(..., state=saved_state) continues with exactly the next batches

Writing: :class:`ShardWriter`; built-in sets: :func:`mnist_arrays`, :func:`digits_arrays`, ``mmgen data --help``.
Names load lazily so that importing a submodule stays cheap.
"""

from __future__ import annotations

from mmgen._lazy import lazy_attributes

_LAZY = {
    "expand_shards": "mmgen.data.shards",
    "iter_raw_samples": "mmgen.data.shards",
    "split_key": "mmgen.data.shards",
    "ShardStream": "mmgen.data.stream",
    "StreamPosition": "mmgen.data.stream",
    "make_loader": "mmgen.data.stream",
    "read_samples": "mmgen.data.stream",
    "DataWarning": "mmgen.data.consumer",
    "decode_sample": "mmgen.data.decode",
    "decode_image": "mmgen.data.decode",
    "decode_audio": "mmgen.data.decode",
    "collate_samples": "mmgen.data.decode",
    "sample_generator": "mmgen.data.decode",
    "ShardWriter": "mmgen.data.writer",
    "encode_image": "mmgen.data.writer",
    "read_manifest": "mmgen.data.writer",
    "mnist_arrays": "mmgen.data.builtin",
    "digits_arrays": "mmgen.data.builtin",
    "skimage_images": "mmgen.data.builtin",
    "stratified_split": "mmgen.data.builtin",
    "write_labeled_arrays": "mmgen.data.builtin",
    "write_skimage": "mmgen.data.builtin",
    "write_folder": "mmgen.data.folder",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes("mmgen.data", _LAZY, globals())

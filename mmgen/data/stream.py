"""The training stream: shuffled, split, batched inside workers, corruption-tolerant and exactly resumable.

Pipeline of one *consumer* (one DataLoader worker of one rank, :class:`mmgen.data.consumer.Consumer`)::

    shard order (seeded per pass) -> this consumer's part -> raw samples (bytes) -> shuffle buffer (seeded)
        -> [fast-forward without decoding when resuming] -> decode (corrupt ones skipped) -> batch -> collate

**Splitting.** With ``C = world_size * workers`` consumers, consumer ``c = rank * workers + logical_worker`` reads
shards ``order[c::C]`` of each pass. With fewer shards than consumers every consumer reads all shards and keeps the
raw samples ``i % C == c``, so consumers always get disjoint data.

**Passes.** ``resampled=True`` loops forever over passes, each with a freshly seeded shard order (every shard once
per pass, i.e. reshuffled epochs rather than draws with replacement); ``resampled=False`` makes ``epochs`` passes
(default 1) and ends.

**Corrupt data.** A sample whose decoding raises (or returns ``None``) is skipped and counted; an unreadable or
truncated shard ends early (its complete samples are kept) and is counted; both warn (:class:`DataWarning`, the
first three then summaries at 10, 100, ... and at the end of a finite stream). An infinite stream raises
:class:`DataError` instead of spinning forever when a consumer's full pass yields no decodable sample (after one
such pass when it reads every shard, i.e. one consumer or fewer shards than consumers; after three in a row when
it reads a share of the shards, which changes from pass to pass). A finite stream just ends.

**Exact resume.** Everything depends only on ``(seed, rank, world_size, workers)``. Every batch carries
``batch["__stream__"] = {"worker", "workers", "raw", "skipped"}``; :class:`StreamPosition` records them, and
``ShardStream(..., state=position.state_dict())`` continues with exactly the batches an uninterrupted run would
have produced next: physical worker ``p`` plays logical worker ``(p + next_worker) % W`` (``next_worker`` is
``N % W`` after ``N`` batches while all workers are alive), and each logical worker replays its raw stream up to
its recorded raw count without decoding.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch.utils.data import DataLoader, IterableDataset

from mmgen.data.consumer import Consumer, DataWarning, distributed_rank, worker_slot
from mmgen.data.decode import collate_samples, decode_sample
from mmgen.data.shards import RawSample, describe_spec, expand_shards
from mmgen.errors import DataError, InvalidArgumentError, check_positive_int

Decoder = Callable[[RawSample], "dict[str, Any] | None"]
Collate = Callable[[Sequence[dict[str, Any]]], dict[str, Any]]

__all__ = ["DataWarning", "ShardStream", "StreamPosition", "make_loader", "read_samples"]


class ShardStream(IterableDataset):
    """Batches from webdataset shards; use with :func:`make_loader` (the DataLoader must not batch again).

    Args:
        shards: anything :func:`mmgen.data.shards.expand_shards` accepts (folder, brace pattern, glob, list).
        decode: raw sample -> sample dict, or ``None`` to skip it (default :func:`decode_sample`). Exceptions count
            as corrupt samples. Must be picklable when DataLoader workers use the ``spawn`` start method.
        batch_size: samples per batch.
        collate: list of sample dicts -> batch dict (default :func:`collate_samples`: images ``[B, C, H, W]``).
        seed: seeds the shard order, the shuffle buffers and the per-sample seeds (``raw["__seed__"]``).
        shuffle_shards: shuffle the shard order of every pass.
        shuffle_buffer: raw samples held by the shuffle buffer (0 or 1: no shuffling).
        resampled: infinite stream of reshuffled passes; ``False`` stops after ``epochs`` passes.
        rank, world_size: this process's place among data-parallel ranks (default: torch.distributed, else 0/1).
        state: :meth:`StreamPosition.state_dict` of a previous run to resume exactly.
        epochs: passes of a finite stream (``resampled=False`` only; default 1).
        drop_last: drop the incomplete last batch of each worker of a finite stream.
        split: split prefix used when ``shards`` is a folder (``train`` reads ``train-*.tar``).
    """

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[str | os.PathLike],
        decode: Decoder | None,
        batch_size: int,
        collate: Collate = collate_samples,
        *,
        seed: int = 0,
        shuffle_shards: bool = True,
        shuffle_buffer: int = 1000,
        resampled: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        state: dict[str, Any] | None = None,
        epochs: int | None = None,
        drop_last: bool = False,
        split: str | None = None,
    ):
        super().__init__()
        self.shards = expand_shards(shards, split)
        self.decode = decode_sample if decode is None else decode
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.collate, self.seed, self.shuffle_shards = collate, int(seed), shuffle_shards
        if shuffle_buffer < 0:
            raise InvalidArgumentError("shuffle_buffer", "an integer >= 0", shuffle_buffer)
        self.shuffle_buffer, self.resampled, self.drop_last = shuffle_buffer, resampled, drop_last
        if resampled and epochs is not None:
            raise InvalidArgumentError("epochs", "None for a resampled (infinite) stream", epochs)
        self.epochs = 1 if epochs is None else check_positive_int("epochs", epochs)
        self.rank, self.world_size = _check_rank(rank, world_size)
        self.state = dict(state) if state else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Batches of the logical worker this process plays (see the module docstring)."""
        physical, workers = worker_slot()
        start, raw, skipped = self._resume_point(workers)
        logical = (physical + start) % workers
        consumer = self.consumer(logical, workers, raw[logical], skipped[logical])
        return consumer.batches(logical, workers)

    def consumer(self, logical: int, workers: int, raw_start: int = 0, skipped_start: int = 0) -> Consumer:
        """The pipeline of logical worker ``logical`` of ``workers`` on this rank."""
        return Consumer(self, self.rank * workers + logical, self.world_size * workers, raw_start, skipped_start)

    def _resume_point(self, workers: int) -> tuple[int, list[int], list[int]]:
        """(first logical worker, raw counts, skipped counts) from ``state``; zeros without one."""
        state = self.state
        if not state or not state.get("batches"):
            return 0, [0] * workers, [0] * workers
        if state.get("workers") != workers:
            raise DataError(f"cannot resume the data stream exactly: it was saved with {state.get('workers')} "
                            f"DataLoader worker(s) (0 counts as 1) and now runs with {workers}; use the same "
                            "num_workers, or start the stream without state")
        start = int(state.get("next_worker", state["batches"] % workers))
        return start, [int(v) for v in state["raw"]], [int(v) for v in state["skipped"]]


def _check_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    default_rank, default_world = distributed_rank()
    rank = default_rank if rank is None else rank
    world_size = default_world if world_size is None else check_positive_int("world_size", world_size)
    if not 0 <= rank < world_size:
        raise InvalidArgumentError("rank", f"an integer in [0, {world_size})", rank)
    return rank, world_size


class StreamPosition:
    """Where the trainer is in a :class:`ShardStream`: call :meth:`update` on every batch it consumes.

    ``state_dict()`` is JSON-serializable::

        {"batches": N, "workers": W, "next_worker": w, "raw": [r_0, ..., r_{W-1}], "skipped": [s_0, ...]}

    ``raw[i]`` counts the raw samples logical worker ``i`` pulled from its shuffle buffer up to its last consumed
    batch; ``next_worker`` is the logical worker after the last batch's one (the DataLoader round-robins), which
    equals ``N % W`` while all workers are alive and stays right when some finite workers have ended.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.workers: int | None = None
        self.next_worker = 0
        self.raw: list[int] = []
        self.skipped: list[int] = []

    def update(self, batch: dict[str, Any]) -> None:
        """Record one consumed batch (reads ``batch["__stream__"]``; the batch is not modified)."""
        info = batch["__stream__"]
        workers, worker = int(info["workers"]), int(info["worker"])
        if self.workers is None:
            self.workers, self.raw, self.skipped = workers, [0] * workers, [0] * workers
        elif workers != self.workers:
            raise DataError(f"batches come from streams with {self.workers} and {workers} workers; "
                            "use one StreamPosition per stream")
        self.raw[worker], self.skipped[worker] = int(info["raw"]), int(info["skipped"])
        self.next_worker = (worker + 1) % workers
        self.batches += 1

    @property
    def skipped_total(self) -> int:
        """Corrupt samples skipped so far by all workers (up to the consumed batches)."""
        return sum(self.skipped)

    def state_dict(self) -> dict[str, Any]:
        if self.workers is None:
            return {"batches": 0}
        return {"batches": self.batches, "workers": self.workers, "next_worker": self.next_worker,
                "raw": list(self.raw), "skipped": list(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__()
        if state.get("batches"):
            self.batches, self.workers = int(state["batches"]), int(state["workers"])
            self.next_worker = int(state.get("next_worker", self.batches % self.workers))
            self.raw, self.skipped = [int(v) for v in state["raw"]], [int(v) for v in state["skipped"]]


class _StreamLoader(DataLoader):
    """A DataLoader whose iterators stop their workers at once on an error, and whose worker-side
    :class:`DataError` reaches the caller as a one-line DataError."""

    def __iter__(self) -> Iterator[Any]:
        return _guarded(super().__iter__())


def _guarded(batches: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from batches
    except DataError as exc:
        _stop_workers(batches)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        last, marker = (lines[-1] if lines else ""), "DataError: "
        raise DataError(last.split(marker, 1)[1] if marker in last else str(exc)) from exc
    except BaseException:  # errors and early exits (GeneratorExit)
        _stop_workers(batches)
        raise


def _stop_workers(batches: Iterator[Any]) -> None:
    """Shut worker processes down now: left to garbage collection (the traceback keeps the iterator alive) the
    shutdown waits 5 s per worker on queues that were already finalized."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def make_loader(stream: ShardStream, num_workers: int = 0, *, pin_memory: bool = False,
                prefetch_factor: int = 2) -> DataLoader:
    """A DataLoader over ``stream`` that does no batching of its own (``batch_size=None``).

    Batches come whole from one worker, round-robin from worker 0; persistent workers are off, so every
    ``iter(loader)`` restarts from the stream's ``state``.
    """
    if num_workers < 0:
        raise InvalidArgumentError("num_workers", "an integer >= 0", num_workers)
    extra = {"prefetch_factor": prefetch_factor} if num_workers > 0 else {}
    return _StreamLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=False, **extra)


def read_samples(shards: str | os.PathLike | Sequence[str | os.PathLike], decode: Decoder | None = None,
                 limit: int | None = None, *, split: str | None = None) -> list[dict[str, Any]]:
    """Decode a small finite set in order (one process, no shuffling): for evaluation sets.

    Corrupt samples are skipped and warned about, as in :class:`ShardStream`.

    Returns:
        Up to ``limit`` decoded sample dicts (all of them when ``limit`` is None).

    Raises:
        DataError: there were samples but none could be decoded.
    """
    stream = ShardStream(shards, decode, 1, shuffle_shards=False, shuffle_buffer=0, resampled=False,
                         rank=0, world_size=1, split=split)
    samples: list[dict[str, Any]] = []
    if limit is not None and limit <= 0:
        return samples
    consumer = stream.consumer(0, 1)
    for sample in consumer.samples():
        samples.append(sample)
        if limit is not None and len(samples) >= limit:
            break
    if not samples and consumer.skipped:
        raise DataError(f"no decodable sample in {describe_spec(shards)} ({consumer.skipped} skipped as corrupt)")
    return samples

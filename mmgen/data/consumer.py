"""One consumer's pipeline: shard part -> raw samples -> shuffle buffer -> fast-forward -> decode -> batches.

A consumer is one DataLoader worker of one rank; :class:`mmgen.data.stream.ShardStream` creates one per worker and
documents the splitting, pass and resume rules implemented here.
"""

from __future__ import annotations

import hashlib
import random
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import get_worker_info

from mmgen.data.shards import RawSample, iter_raw_samples
from mmgen.errors import DataError

if TYPE_CHECKING:
    from mmgen.data.stream import ShardStream


class DataWarning(UserWarning):
    """A corrupt sample or unreadable shard was skipped."""


class _Reporter:
    """Rate-limited warnings: the first ``first`` events one by one, then a summary at 10, 100, 1000... events
    and one when a finite stream ends."""

    def __init__(self, who: str, first: int = 3):
        self.who, self.first = who, first
        self.counts: Counter[str] = Counter()
        self.reported: Counter[str] = Counter()

    def report(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        count = self.counts[kind]
        if count <= self.first:
            self._warn(kind, f"skipped {kind}: {detail}")
        elif count >= 10 and str(count).rstrip("0") == "1":
            self._warn(kind, f"{count} {kind}s skipped so far (last: {detail})")

    def summarize(self) -> None:
        """Warn the totals not yet reported (at the end of a finite stream)."""
        for kind, count in self.counts.items():
            if count > self.first and self.reported[kind] != count:
                self._warn(kind, f"{count} {kind}s skipped in total")

    def _warn(self, kind: str, message: str) -> None:
        self.reported[kind] = self.counts[kind]
        warnings.warn(f"mmgen.data ({self.who}): {message}", DataWarning, stacklevel=3)


def _sample_seed(seed: int, consumer: int, consumers: int, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{consumer}/{consumers}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def shuffle_buffer(items: Iterator[RawSample], size: int, rng: random.Random) -> Iterator[RawSample]:
    """Seeded reservoir shuffle: fill ``size`` items, then emit a random one per new item, then drain randomly."""
    if size <= 1:
        yield from items
        return
    buffer: list[RawSample] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= size:
            yield _pop_random(buffer, rng)
    while buffer:
        yield _pop_random(buffer, rng)


def _pop_random(buffer: list[RawSample], rng: random.Random) -> RawSample:
    index = rng.randrange(len(buffer))
    buffer[index], buffer[-1] = buffer[-1], buffer[index]
    return buffer.pop()


class Consumer:
    """One consumer's pipeline and counters (see the module docstring)."""

    def __init__(self, stream: ShardStream, index: int, count: int, raw_start: int = 0, skipped_start: int = 0):
        self.stream, self.index, self.count = stream, index, count
        self.raw_start, self.pulled, self.skipped = raw_start, 0, skipped_start
        self.pass_sizes: dict[int, int] = {}
        self.pass_pulled: Counter[int] = Counter()
        self.pass_good: Counter[int] = Counter()
        self.bad_passes = 0  # consecutive completed passes without a decodable sample
        # a consumer that reads every shard each pass knows after one bad pass; one with a share of the shards
        # waits a few passes, since its next shares differ
        self.patience = 1 if count == 1 or len(stream.shards) < count else 3
        self.reporter = _Reporter(f"consumer {index}/{count}")

    def shard_order(self, epoch: int) -> list[str]:
        shards = list(self.stream.shards)
        if self.stream.shuffle_shards:
            random.Random(f"mmgen-shards:{self.stream.seed}:{epoch}").shuffle(shards)
        return shards

    def _bad_shard(self, path: str, exc: Exception) -> None:
        self.reporter.report("unreadable shard", f"{path}: {type(exc).__name__}: {exc}")

    def one_pass(self, epoch: int) -> Iterator[RawSample]:
        order = self.shard_order(epoch)
        if len(order) >= self.count:
            for path in order[self.index :: self.count]:
                yield from iter_raw_samples(path, self._bad_shard)
            return
        position = 0
        for path in order:
            for raw in iter_raw_samples(path, self._bad_shard):
                if position % self.count == self.index:
                    yield raw
                position += 1

    def raw_samples(self) -> Iterator[RawSample]:
        """All passes, each raw sample tagged with its pass (``__epoch__``); pass sizes recorded when known.

        Raises:
            DataError: an infinite stream had ``patience`` passes in a row without any readable sample.
        """
        epoch, empty = 0, 0
        while self.stream.resampled or epoch < self.stream.epochs:
            size = 0
            for raw in self.one_pass(epoch):
                raw["__epoch__"] = epoch
                size += 1
                yield raw
            empty = 0 if size else empty + 1
            if self.stream.resampled and empty >= self.patience:
                raise DataError(f"consumer {self.index} of {self.count} got no readable sample in {empty} "
                                f"pass(es) over {len(self.stream.shards)} shard(s) (unreadable shards, or fewer "
                                "samples than ranks x workers)")
            self.pass_sizes[epoch] = size
            epoch += 1

    def _pulls(self) -> Iterator[RawSample]:
        rng = random.Random(f"mmgen-buffer:{self.stream.seed}:{self.index}/{self.count}")
        for raw in shuffle_buffer(self.raw_samples(), self.stream.shuffle_buffer, rng):
            raw["__seed__"] = _sample_seed(self.stream.seed, self.index, self.count, self.pulled)
            self.pulled += 1
            yield raw

    def _finish_passes(self) -> None:
        """Count completed passes (all their samples pulled) without a decodable sample; an infinite stream
        raises :class:`DataError` after ``patience`` of them in a row instead of spinning forever."""
        for epoch in [e for e, size in self.pass_sizes.items() if self.pass_pulled[e] >= size]:
            del self.pass_sizes[epoch]
            pulled, good = self.pass_pulled.pop(epoch, 0), self.pass_good.pop(epoch, 0)
            self.bad_passes = 0 if good else self.bad_passes + 1
            if self.stream.resampled and self.bad_passes >= self.patience:
                raise DataError(f"consumer {self.index} of {self.count}: no decodable sample in {self.bad_passes} "
                                f"pass(es) (pass {epoch}: {pulled} samples, all skipped) over shards like "
                                f"{self.stream.shards[0]!r}")

    def _decode(self, raw: RawSample) -> dict[str, Any] | None:
        try:
            sample = self.stream.decode(raw)
            reason = "decoder returned None"
        except Exception as exc:  # a corrupt member must never stop the stream
            sample, reason = None, f"{type(exc).__name__}: {exc}"
        if sample is None:
            self.skipped += 1
            self.reporter.report("corrupt sample", f"{raw.get('__key__')!r} in {raw.get('__url__')}: {reason}")
        return sample

    def samples(self) -> Iterator[dict[str, Any]]:
        """Decoded samples, after fast-forwarding ``raw_start`` raw samples without decoding them."""
        for raw in self._pulls():
            epoch = raw["__epoch__"]
            self.pass_pulled[epoch] += 1
            sample = None if self.pulled <= self.raw_start else self._decode(raw)
            if sample is not None or self.pulled <= self.raw_start:
                self.pass_good[epoch] += 1
            self._finish_passes()
            if sample is not None:
                yield sample
        self.reporter.summarize()

    def batches(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
        """Collated batches, each with ``__stream__`` = {worker, workers, raw, skipped}."""
        pending: list[dict[str, Any]] = []
        size = self.stream.batch_size
        for sample in self.samples():
            pending.append(sample)
            if len(pending) == size:
                yield self._batch(pending, worker, workers)
                pending = []
        if pending and not self.stream.drop_last:
            yield self._batch(pending, worker, workers)

    def _batch(self, samples: list[dict[str, Any]], worker: int, workers: int) -> dict[str, Any]:
        batch = self.stream.collate(samples)
        batch["__stream__"] = {"worker": worker, "workers": workers, "raw": self.pulled, "skipped": self.skipped}
        return batch


def worker_slot() -> tuple[int, int]:
    """(physical DataLoader worker id, number of workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def distributed_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1

"""Raw read bandwidth of the model's own expert byte ranges: the same per-tensor
read sizes and the same number of concurrent preads as the engine's reader,
but with nothing else in the way (no conversion, no cache, no decoding).

Two shapes: `stream` keeps `threads` reads in flight over a shuffled list of
experts (what the disk can do), and `batches` replays the engine's own miss
batches, waiting for each batch before the next (what the disk can do with
the concurrency the decode loop actually offers).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from engine.checkpoint import CheckpointIndex


@dataclass(frozen=True)
class Read:
    file: Path
    offset: int
    nbytes: int


def expert_reads(index: CheckpointIndex, row: int, expert: int) -> list[Read]:
    """The engine's reads for one expert: one pread per stacked tensor, in its order."""
    layer = index.moe_layers[sorted(index.moe_layers)[row]]
    return [Read(t.location.file, *t.expert_range(expert)) for t in layer.tensors.values()]


def sample_experts(index: CheckpointIndex, max_bytes: int | None, seed: int = 0) -> list[tuple[int, int]]:
    """Shuffled (row, expert) keys of the whole model, cut to about max_bytes of reads."""
    rows = sorted(index.moe_layers)
    keys = [(r, e) for r in range(len(rows)) for e in range(index.moe_layers[rows[r]].num_experts)]
    random.Random(seed).shuffle(keys)
    if max_bytes is None:
        return keys
    per_expert = sum(r.nbytes for r in expert_reads(index, 0, 0))
    return keys[: max(1, max_bytes // per_expert)]


class _Reader:
    def __init__(self, files: Sequence[Path], threads: int, largest: int) -> None:
        self.fds = {Path(f): os.open(f, os.O_RDONLY) for f in files}
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.buffers = [bytearray(largest) for _ in range(threads)]
        self._free = list(range(threads))

    def read(self, job: Read) -> int:
        slot = self._free.pop()
        try:
            buf = memoryview(self.buffers[slot])[: job.nbytes]
            done = 0
            while done < job.nbytes:
                n = os.preadv(self.fds[job.file], [buf[done:]], job.offset + done)
                if n == 0:
                    raise OSError(f"{job.file} ended at byte {job.offset + done}")
                done += n
            return done
        finally:
            self._free.append(slot)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for fd in self.fds.values():
            os.close(fd)


def _measure(index: CheckpointIndex, batches: list[list[Read]], threads: int) -> dict:
    largest = max((r.nbytes for b in batches for r in b), default=1)
    reader = _Reader(sorted(index.file_sizes), threads, largest)
    try:
        start = time.perf_counter()
        total = reads = 0
        for batch in batches:
            futures = [reader.pool.submit(reader.read, job) for job in batch]
            wait(futures)
            total += sum(f.result() for f in futures)
            reads += len(futures)
        seconds = time.perf_counter() - start
    finally:
        reader.close()
    return {
        "bytes": total,
        "reads": reads,
        "seconds": seconds,
        "threads": threads,
        "bandwidth_bytes_per_s": total / seconds if seconds > 0 else None,
    }


def read_stream(index: CheckpointIndex, keys: Sequence[tuple[int, int]], threads: int) -> dict:
    """All reads of `keys` with `threads` always in flight (one batch)."""
    jobs = [r for row, e in keys for r in expert_reads(index, row, e)]
    return _measure(index, [jobs], threads) | {"experts": len(keys)}


def read_batches(index: CheckpointIndex, batches: Sequence[Sequence[tuple[int, int]]], threads: int) -> dict:
    """The engine's miss batches in order, each waited for before the next."""
    jobs = [[r for row, e in batch for r in expert_reads(index, row, e)] for batch in batches]
    jobs = [b for b in jobs if b]
    return _measure(index, jobs, threads) | {"experts": sum(len(b) for b in batches), "batches": len(jobs)}

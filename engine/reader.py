"""The SSD reader: fills cache slots with expert bytes on its own threads.

Reader threads never touch MLX graphs; they `pread` straight into the
numpy views of MLX-owned slot buffers (zero copy) or, when the on-disk dtype
differs from the compute dtype (bf16 scales on the CPU backend), into a small
staging buffer converted in place.

Reads wait in one priority queue: a read the decoder is blocked on (DEMAND)
always starts before a speculative one (PREFETCH), and a speculative read that
has not started can be cancelled or promoted once the router has spoken.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from engine import page_cache
from engine.errors import ExpertReadError


class ReadJob(NamedTuple):
    """One byte range into one slot's view (a tuple: a decode step builds one per expert tensor)."""

    file: Path
    offset: int
    nbytes: int
    dest: np.ndarray  # the slot's view, C-contiguous
    convert: str | None = None  # None: raw bytes; else the on-disk float tag (convert_into)


DEMAND, PREFETCH = 0, 1  # read priorities: lower starts first
_PENDING, _RUNNING, _DONE, _CANCELLED = range(4)


class _Unit:
    """Reads one reader thread does in a row (one expert's tensors): one queue entry, one
    wake-up, instead of one per tensor."""

    __slots__ = ("jobs", "priority", "state", "error", "waiters")

    def __init__(self, jobs: Iterable[ReadJob], priority: int) -> None:
        self.jobs, self.priority, self.state = jobs, priority, _PENDING
        self.error: BaseException | None = None
        self.waiters: list[_Waiter] = []  # whoever waits for this unit among others


class _Waiter:
    """One wait() in progress: how many of its units have not finished. The waiting thread
    is woken once, by the last of them, not at every unit's end."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


class ReadTicket:
    """Completion of a batch of reads; wait() re-raises the first read error.
    Only the thread that submitted it calls its methods."""

    def __init__(self, reader: ExpertReader, units: list[_Unit]) -> None:
        self._reader, self._units = reader, units

    def done(self) -> bool:
        return all(u.state >= _DONE for u in self._units)

    def failed(self) -> bool:
        return self.done() and any(u.state == _CANCELLED or u.error is not None for u in self._units)

    def wait(self) -> None:
        self._reader._wait(self._units)
        for u in self._units:
            if u.state == _CANCELLED:
                raise ExpertReadError("an expert read was cancelled while the decoder needed it")
            if u.error is not None:
                raise u.error

    def cancel(self) -> bool:
        """Cancel the batch if none of its reads has started (True: its slots are untouched);
        a batch already reading completes whole."""
        return self._reader._cancel(self._units)

    def promote(self) -> None:
        """The decoder now waits for this batch: its reads not started go before speculative ones."""
        self._reader._promote(self._units)


class ReadStats:
    """Bytes and latencies of reads; updated by reader threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.reads = 0
        self.read_seconds = 0.0  # summed per read: concurrent reads overlap
        self._busy = 0.0  # time with at least one read in flight, closed intervals
        self._in_flight = 0
        self._busy_since = 0.0

    def begin(self) -> None:
        with self._lock:
            if self._in_flight == 0:
                self._busy_since = time.perf_counter()
            self._in_flight += 1

    def add(self, nbytes: int, seconds: float) -> None:
        """A read that `begin` announced has ended (nbytes 0 if it failed)."""
        with self._lock:
            self.bytes_read += nbytes
            self.reads += 1 if nbytes else 0
            self.read_seconds += seconds
            self._in_flight -= 1
            if self._in_flight == 0:
                self._busy += time.perf_counter() - self._busy_since

    def busy_and_bytes(self) -> tuple[float, int]:
        """(seconds the disk has had reads in flight, bytes read): their ratio over an interval is
        what one more byte costs there, whatever the number of reader threads (a capped or
        saturated disk shares its bandwidth between concurrent reads)."""
        with self._lock:
            busy = self._busy + (time.perf_counter() - self._busy_since if self._in_flight else 0.0)
            return busy, self.bytes_read


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounded to nearest even with NaN kept quiet: what
    MLX's own float -> bfloat16 cast does (mlx/types/bf16.h), so a slot holds the very bits
    the resident model's astype(bfloat16) would."""
    bits = values.astype(np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(values), np.uint16(0x7FC0), rounded)


# on-disk float dtype -> its values as float32 (exact: every half-precision value is a float32)
_TO_FLOAT32 = {
    "BF16": _bf16_to_f32,
    "F16": lambda raw: raw.view(np.float16).astype(np.float32),
    "F32": lambda raw: raw.view(np.float32),
}


def convert_into(dest: np.ndarray, raw: np.ndarray, tag: str) -> None:
    """Write the float tensor `raw` (on-disk bytes of dtype `tag`) into a slot's view in the
    slot's dtype: float32 or float16 views take numpy's round-to-nearest-even cast (MLX's),
    a uint16 view holds bfloat16 bits (SlotPool stores bfloat16 as uint16)."""
    values = _TO_FLOAT32[tag](raw)
    flat = dest.reshape(-1)
    if flat.dtype == np.uint16:
        flat[...] = _f32_to_bf16_bits(values)
    else:
        flat[...] = values


def default_reader_threads() -> int:
    """4 concurrent reads, or one per core where there are fewer: on 2 cores with small
    experts, 4 reader threads took the decoder's core with their GIL hand-offs (4.5-5.5 vs
    7.8 tok/s with 2, outlier_tui/bench/RESULTS.md). A Mac, with 8 cores or more, keeps 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cores))


class ExpertReader:
    def __init__(self, files: list[Path], threads: int | None = None, uncached: bool = False) -> None:
        threads = default_reader_threads() if threads is None else threads
        if threads < 1:
            raise ValueError("reader threads must be >= 1")
        self._fds: dict[Path, int] = {}
        self._ident: dict[Path, tuple[int, int]] = {}
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            page_cache.no_readahead(fd)
            if uncached and not hasattr(os, "posix_fadvise"):  # macOS: F_NOCACHE, reads skip the page cache
                page_cache.bypass(fd)
            st = os.fstat(fd)
            self._fds[f] = fd
            self._ident[f] = (st.st_dev, st.st_ino)
        lock = threading.Lock()  # guards the queue and every unit's state
        self._queued = threading.Condition(lock)  # reader threads wait here for units
        self._finished = threading.Condition(lock)  # wait() waits here for its units
        self._heap: list[tuple[int, int, _Unit]] = []
        self._order = itertools.count()  # FIFO within one priority
        self._closing = False
        self._workers = [
            threading.Thread(target=self._work, name=f"outlier-ssd-{i}", daemon=True) for i in range(threads)
        ]
        for worker in self._workers:
            worker.start()
        self.threads = threads
        self.stats = ReadStats()
        # drop each range from the OS page cache once read: every miss then comes from the disk,
        # as for a model much larger than RAM (the I/O-bound benchmark; the engine's own cache
        # holds the bytes it keeps)
        self.uncached = uncached

    def submit(self, jobs: list[ReadJob], priority: int = DEMAND) -> ReadTicket:
        """Each job on its own, spread over the reader threads."""
        return self.submit_units([[job] for job in jobs], priority)

    def submit_units(self, units: Sequence[Iterable[ReadJob]], priority: int = DEMAND) -> ReadTicket:
        """Each unit's jobs read in a row by one thread (one expert); units run concurrently.
        A unit may be lazy (a generator): the thread that runs it builds its jobs."""
        batch = [_Unit(jobs, priority) for jobs in units]
        with self._queued:
            for unit in batch:
                heapq.heappush(self._heap, (priority, next(self._order), unit))
            self._queued.notify(len(batch))
        return ReadTicket(self, batch)

    def _work(self) -> None:
        while True:
            with self._queued:
                while True:
                    if not self._heap:
                        if self._closing:
                            return
                        self._queued.wait()
                        continue
                    priority, _, unit = heapq.heappop(self._heap)
                    if unit.state == _PENDING and unit.priority == priority:  # else a stale entry
                        unit.state = _RUNNING
                        break
            try:
                for job in unit.jobs:
                    self._run(job)
            except BaseException as exc:  # handed to whoever waits on the ticket
                unit.error = exc
            with self._finished:
                unit.state = _DONE
                self._finish(unit)

    def _finish(self, unit: _Unit) -> None:
        """A unit has ended (read, failed or cancelled): wake whoever waited for it last."""
        for waiter in unit.waiters:
            waiter.left -= 1
            if waiter.left == 0:
                self._finished.notify_all()
        unit.waiters = []

    def _wait(self, units: list[_Unit]) -> None:
        with self._finished:
            pending = [u for u in units if u.state < _DONE]
            if not pending:
                return
            waiter = _Waiter(len(pending))
            for u in pending:
                u.waiters.append(waiter)
            while waiter.left:
                self._finished.wait()

    def _cancel(self, units: list[_Unit]) -> bool:
        with self._finished:
            if any(u.state != _PENDING for u in units):
                return False
            for u in units:
                u.state = _CANCELLED
                self._finish(u)
            return True

    def _promote(self, units: list[_Unit]) -> None:
        with self._queued:
            for u in units:
                if u.state == _PENDING and u.priority != DEMAND:
                    u.priority = DEMAND  # its old queue entry is now stale
                    heapq.heappush(self._heap, (DEMAND, next(self._order), u))

    def check_files(self) -> None:
        """Fail fast if a shard was replaced or shrunk since it was opened."""
        for f in self._fds:
            try:
                st = os.stat(f)
            except OSError as exc:
                raise ExpertReadError(f"{f.name} is gone ({exc.strerror}); restore it or reload the model.") from None
            if (st.st_dev, st.st_ino) != self._ident[f]:
                raise ExpertReadError(f"{f.name} was replaced on disk since the model was loaded; reload the model.")

    def _run(self, job: ReadJob) -> None:
        self.stats.begin()
        start = time.perf_counter()
        nbytes = 0
        try:
            if job.convert is None:
                self._pread_into(job, job.dest.reshape(-1).view(np.uint8).data)
            else:
                staging = np.empty(job.nbytes, np.uint8)
                self._pread_into(job, staging.data)
                convert_into(job.dest, staging, job.convert)
            nbytes = job.nbytes
        finally:
            self.stats.add(nbytes, time.perf_counter() - start)

    def _pread_into(self, job: ReadJob, buf: memoryview) -> None:
        fd = self._fds[job.file]
        done = 0
        while done < job.nbytes:
            try:
                n = os.preadv(fd, [buf[done:]], job.offset + done)
            except OSError as exc:
                raise ExpertReadError(
                    f"Reading experts from {job.file.name} failed ({exc.strerror}); check the disk "
                    "and send the message again."
                ) from None
            if n == 0:
                raise ExpertReadError(
                    f"{job.file.name} ended early at byte {job.offset + done}: the file changed on "
                    "disk since the model was loaded; restore it or reload the model."
                )
            done += n
        if self.uncached and hasattr(os, "posix_fadvise"):
            page_cache.forget(fd, job.offset, job.nbytes)

    def close(self) -> None:
        with self._queued:
            for _, _, unit in self._heap:  # reads nobody will use
                if unit.state == _PENDING:
                    unit.state = _CANCELLED
                    self._finish(unit)
            self._heap.clear()
            self._closing = True
            self._queued.notify_all()
        for worker in self._workers:
            worker.join()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

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

import itertools
import os
import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import ExpertReadError


@dataclass(frozen=True)
class ReadJob:
    file: Path
    offset: int
    nbytes: int
    dest: np.ndarray  # the slot's view, C-contiguous
    convert: str | None = None  # None: raw bytes; else a key of _CONVERTERS


DEMAND, PREFETCH = 0, 1  # read priorities: lower starts first


class ReadTicket:
    """Completion of a batch of jobs; wait() re-raises the first read error.
    Only the thread that submitted it calls its methods."""

    def __init__(self, reader: "ExpertReader", jobs: list[ReadJob], futures: list[Future],
                 priority: int) -> None:
        self._reader, self._jobs, self._futures, self.priority = reader, jobs, futures, priority

    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def failed(self) -> bool:
        return self.done() and any(f.cancelled() or f.exception() is not None for f in self._futures)

    def wait(self) -> None:
        for f in self._futures:
            try:
                err = f.exception()
            except CancelledError:
                raise ExpertReadError("an expert read was cancelled while the decoder needed it") from None
            if err is not None:
                raise err

    def cancel(self) -> bool:
        """Cancel every read not started yet; True when none had started (the slot is untouched)."""
        cancelled = [f.cancel() for f in self._futures]
        if all(cancelled):
            return True
        if any(cancelled):  # some reads started: finish the batch, the bytes must be whole
            self._requeue(self.priority)
        return False

    def promote(self) -> None:
        """The decoder now waits for this speculative batch: its reads not started go first."""
        if self.priority != DEMAND:
            self._requeue(DEMAND)

    def _requeue(self, priority: int) -> None:
        self.priority = priority
        for i, f in enumerate(self._futures):
            if f.cancelled() or f.cancel():
                self._futures[i] = self._reader._enqueue(self._jobs[i], priority)


class ReadStats:
    """Bytes and latencies of reads; updated by reader threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.reads = 0
        self.read_seconds = 0.0

    def add(self, nbytes: int, seconds: float) -> None:
        with self._lock:
            self.bytes_read += nbytes
            self.reads += 1
            self.read_seconds += seconds


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


# on-disk dtype -> float32 compute dtype (the CPU backend's fast path)
_CONVERTERS = {
    "BF16": _bf16_to_f32,
    "F16": lambda raw: raw.view(np.float16),
}


class ExpertReader:
    def __init__(self, files: list[Path], threads: int = 4) -> None:
        if threads < 1:
            raise ValueError("reader threads must be >= 1")
        self._fds: dict[Path, int] = {}
        self._ident: dict[Path, tuple[int, int]] = {}
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            st = os.fstat(fd)
            self._fds[f] = fd
            self._ident[f] = (st.st_dev, st.st_ino)
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()  # FIFO within one priority
        self._workers = [threading.Thread(target=self._work, name=f"outlier-ssd-{i}", daemon=True)
                         for i in range(threads)]
        for worker in self._workers:
            worker.start()
        self.threads = threads
        self.stats = ReadStats()

    def submit(self, jobs: list[ReadJob], priority: int = DEMAND) -> ReadTicket:
        return ReadTicket(self, jobs, [self._enqueue(job, priority) for job in jobs], priority)

    def _enqueue(self, job: ReadJob | None, priority: int) -> Future:
        future: Future = Future()
        self._queue.put((priority, next(self._order), job, future))
        return future

    def _work(self) -> None:
        while True:
            _, _, job, future = self._queue.get()
            if job is None:  # close()
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                self._run(job)
            except BaseException as exc:  # handed to whoever waits on the ticket
                future.set_exception(exc)
            else:
                future.set_result(None)

    def check_files(self) -> None:
        """Fail fast if a shard was replaced or shrunk since it was opened."""
        for f, fd in self._fds.items():
            try:
                st = os.stat(f)
            except OSError as exc:
                raise ExpertReadError(f"{f.name} is gone ({exc.strerror}); restore it or reload the model.") from None
            if (st.st_dev, st.st_ino) != self._ident[f]:
                raise ExpertReadError(
                    f"{f.name} was replaced on disk since the model was loaded; reload the model."
                )

    def _run(self, job: ReadJob) -> None:
        start = time.perf_counter()
        if job.convert is None:
            self._pread_into(job, memoryview(job.dest.reshape(-1).view(np.uint8)))
        else:
            staging = np.empty(job.nbytes, np.uint8)
            self._pread_into(job, memoryview(staging))
            job.dest.reshape(-1)[...] = _CONVERTERS[job.convert](staging)
        self.stats.add(job.nbytes, time.perf_counter() - start)

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

    def close(self) -> None:
        for _ in self._workers:
            self._enqueue(None, PREFETCH + 1)  # after every queued read
        for worker in self._workers:
            worker.join()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

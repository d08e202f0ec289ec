"""Whether expert reads go through the OS page cache (`--page-cache on|off`, default auto).

Through it (on), an expert evicted from the engine's cache may come back from RAM
instead of the SSD, for free while memory is spare; past it (off: `F_NOCACHE` on
macOS, each range dropped after the read elsewhere) the page cache neither
competes with the expert cache and the backbone for memory nor double-buffers what
the engine already holds. Other engines read with `F_NOCACHE`; one measured the page
cache to be faster. So auto measures, once at load, on a few of the model's own
experts: a re-read that the page cache serves must beat a read from the disk by
`MARGIN`, else reads bypass it. The decision and its figures are reported.
"""

from __future__ import annotations

import bisect
import itertools
import mmap
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.checkpoint import MoELayerFiles

SAMPLE_BYTES = 8 * 1024 * 1024  # a short measurement: a few large experts,
SAMPLE_EXPERTS = 128  # or this many small ones (each a random read: tiny ones cost latency, not bytes)
MARGIN = 2.0  # a page-cache hit must be this much faster than a disk read to be worth memory


@dataclass(frozen=True)
class PageCacheDecision:
    on: bool
    disk_s: float  # reading the sample with its pages dropped first
    cached_s: float  # reading it again through the page cache
    nbytes: int
    forced: bool = False

    def describe(self) -> str:
        if self.forced:
            return f"page cache {'on' if self.on else 'off'} (--page-cache)"
        speed = self.disk_s / self.cached_s if self.cached_s > 0 else float("inf")
        return (
            f"page cache {'on' if self.on else 'off'}: a cached re-read of {self.nbytes / 2**20:.1f} MB "
            f"of experts was {speed:.1f}x a read from disk (on above {MARGIN:.0f}x)"
        )


def expert_ranges(
    layers: list[MoELayerFiles], nbytes: int = SAMPLE_BYTES, experts: int = SAMPLE_EXPERTS, seed: int = 0
) -> list[tuple[Path, int, int]]:
    """(file, offset, size) of every tensor of about nbytes of experts, or of `experts` of them
    if fewer, as a decode reads them: experts picked at random over every layer, in random
    order, each expert's tensors in a row. Contiguous experts read in file order would
    measure the disk at its sequential speed, which decoding never sees (here: 1.3x for the
    page cache that way, while decode ran 3x faster with it)."""
    starts = list(itertools.accumulate((files.num_experts for files in layers), initial=0))
    picks = random.Random(seed).sample(range(starts[-1]), min(experts, starts[-1]))  # in random order
    ranges: list[tuple[Path, int, int]] = []
    total = 0
    for pick in picks:
        layer = bisect.bisect_right(starts, pick) - 1
        files, expert = layers[layer], pick - starts[layer]
        for tensor in files.tensors.values():
            if tensor.stacked:
                offset, size = tensor.location.offset + expert * tensor.expert_nbytes, tensor.expert_nbytes
                ranges.append((tensor.location.file, offset, size))
            else:
                offset, size = tensor.expert_range(expert)
                ranges.append((tensor.expert_file(expert), offset, size))
            total += size
        if total >= nbytes:
            break
    return ranges


def decide(layers: list[MoELayerFiles], forced: bool | None = None) -> PageCacheDecision:
    """forced True/False: that, unmeasured; None: measure (see the module doc)."""
    if forced is not None:
        return PageCacheDecision(forced, 0.0, 0.0, 0, forced=True)
    ranges = expert_ranges(layers)
    if not ranges or not hasattr(os, "posix_fadvise") and not _can_nocache():
        return PageCacheDecision(True, 0.0, 0.0, 0)  # nothing to measure, or no way to bypass it
    fds = {f: os.open(f, os.O_RDONLY) for f in {r[0] for r in ranges}}
    try:
        for f, offset, size in ranges:
            _drop(fds[f], offset, size)
        disk = _read_all(fds, ranges)
        cached = _read_all(fds, ranges)
    finally:
        for fd in fds.values():
            os.close(fd)
    nbytes = sum(r[2] for r in ranges)
    return PageCacheDecision(cached * MARGIN < disk, disk, cached, nbytes)


def no_readahead(fd: int) -> None:
    """The OS reads only the ranges asked for. The reader asks for every byte of an expert
    it needs, so readahead can only bring neighbours' bytes, which a router picks by chance:
    measured here (vda, read_ahead_kb 8192, reads capped at 25 MB/s) it made a follow-up's
    reads 1.5x the bytes it needed, with the page cache on."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    elif sys.platform == "darwin":
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_RDAHEAD", _DARWIN_F_RDAHEAD), 0)


_DARWIN_F_RDAHEAD = 45  # <sys/fcntl.h>; Python's fcntl module may not name it


def bypass(fd: int) -> None:
    """Reads of fd skip the page cache where the system can say so for a whole file (macOS
    F_NOCACHE); elsewhere the reader drops each range after reading it."""
    if _can_nocache():
        import fcntl

        fcntl.fcntl(fd, fcntl.F_NOCACHE, 1)  # type: ignore[attr-defined]


def _can_nocache() -> bool:
    import fcntl

    return hasattr(fcntl, "F_NOCACHE")


def forget(fd: int, offset: int, size: int) -> None:
    """Drop a range just read from the page cache (Linux; macOS reads with F_NOCACHE instead).
    POSIX_FADV_DONTNEED drops only the pages wholly inside its range, so the range is widened
    to whole pages: an expert tensor smaller than a page (7.7 KB experts in three tensors
    each, at the scale model's width) or the ends of a larger one would stay cached, and a
    load-time measurement would compare the page cache with itself (it read 1.0x here)."""
    start = offset - offset % mmap.PAGESIZE
    end = -(-(offset + size) // mmap.PAGESIZE) * mmap.PAGESIZE
    os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)


def _drop(fd: int, offset: int, size: int) -> None:
    if hasattr(os, "posix_fadvise"):
        forget(fd, offset, size)
    else:  # macOS: read once with F_NOCACHE set, which also evicts the pages it touches
        import fcntl

        fcntl.fcntl(fd, fcntl.F_NOCACHE, 1)  # type: ignore[attr-defined]
        os.pread(fd, size, offset)
        fcntl.fcntl(fd, fcntl.F_NOCACHE, 0)  # type: ignore[attr-defined]


def _read_all(fds: dict[Path, int], ranges: list[tuple[Path, int, int]]) -> float:
    start = time.perf_counter()
    for f, offset, size in ranges:
        os.pread(fds[f], size, offset)
    return time.perf_counter() - start

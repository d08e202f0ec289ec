"""Make model files cold (evict them from the OS page cache) and check that it
worked, so "cold read" figures are reads from the disk, not from memory.

Per-file posix_fadvise(DONTNEED) is tried first (it touches nobody else's
files); if pages stay resident (mapped or dirty elsewhere) and we are root,
the whole page cache is dropped. `resident_fraction` (mmap + mincore) says
how cold the files really are; callers report it next to their figures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from collections.abc import Iterable
from pathlib import Path

_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_fraction(files: Iterable[Path]) -> float:
    """Fraction of the files' pages now in the page cache (0: cold, 1: all cached)."""
    resident = total = 0
    for f in files:
        r, t = _resident_pages(Path(f))
        resident += r
        total += t
    return resident / total if total else 0.0


def _resident_pages(path: Path) -> tuple[int, int]:
    size = path.stat().st_size
    if size == 0:
        return 0, 0
    pages = (size + _PAGE - 1) // _PAGE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return 0, pages
        try:
            vec = (ctypes.c_ubyte * pages)()
            if _libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return 0, pages
            return sum(b & 1 for b in vec), pages
        finally:
            _libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def drop(files: Iterable[Path], threshold: float = 0.01, allow_global: bool = True) -> dict:
    """Evict the files from the page cache; returns how, and the residency left.
    allow_global permits dropping the whole page cache as a last resort."""
    files = [Path(f) for f in files]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    method = "posix_fadvise"
    left = resident_fraction(files)
    if left > threshold:  # dirty pages (a file just written) are not dropped: flush first
        for f in files:
            _flush_and_advise(f)
        method = "fsync+posix_fadvise"
        left = resident_fraction(files)
    if left > threshold and allow_global and _drop_all():
        method = "drop_caches"
        left = resident_fraction(files)
    return {"method": method, "resident_fraction": left}


def _flush_and_advise(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _drop_all() -> bool:
    """Drop the whole (clean) page cache; root only."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("1\n")
        return True
    except OSError:
        return False

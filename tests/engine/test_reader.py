"""The SSD reader: exact bytes into the slot views, conversions, and clear errors."""

import errno
import os
import sys
import threading

import numpy as np
import pytest

import engine.reader as reader_module
from engine.errors import ExpertReadError
from engine.reader import ExpertReader, ReadJob, ReadStats


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 64)
    return path


def test_reads_exact_ranges_concurrently(data_file):
    reader = ExpertReader([data_file], threads=3)
    dests = [np.zeros(100, np.uint8) for _ in range(8)]
    ticket = reader.submit([ReadJob(data_file, 7 * i, 100, d) for i, d in enumerate(dests)])
    ticket.wait()
    raw = data_file.read_bytes()
    for i, d in enumerate(dests):
        assert d.tobytes() == raw[7 * i : 7 * i + 100]
    assert reader.stats.bytes_read == 800 and reader.stats.reads == 8
    reader.close()


def test_bf16_and_f16_are_widened_to_float32(tmp_path):
    values = np.array([1.5, -2.25, 3.0e-3, 65504.0], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)
    path = tmp_path / "halves.bin"
    path.write_bytes(bf16.tobytes() + values.astype(np.float16).tobytes())
    reader = ExpertReader([path])
    a, b = np.zeros(4, np.float32), np.zeros(4, np.float32)
    reader.submit([ReadJob(path, 0, 8, a, "BF16"), ReadJob(path, 8, 8, b, "F16")]).wait()
    np.testing.assert_array_equal(a, (bf16.astype(np.uint32) << 16).view(np.float32))
    np.testing.assert_array_equal(b, values.astype(np.float16).astype(np.float32))
    reader.close()


def test_io_error_becomes_expert_read_error(data_file, monkeypatch):
    reader = ExpertReader([data_file])

    def failing_preadv(fd, buffers, offset):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("engine.reader.os.preadv", failing_preadv)
    with pytest.raises(ExpertReadError) as exc:
        reader.submit([ReadJob(data_file, 0, 10, np.zeros(10, np.uint8))]).wait()
    assert "Input/output error" in str(exc.value) and "blob.bin" in str(exc.value)
    monkeypatch.undo()
    reader.submit([ReadJob(data_file, 0, 10, np.zeros(10, np.uint8))]).wait()  # still serving
    reader.close()


def test_short_file_is_reported(data_file):
    reader = ExpertReader([data_file])
    with pytest.raises(ExpertReadError) as exc:
        reader.submit([ReadJob(data_file, data_file.stat().st_size - 5, 10, np.zeros(10, np.uint8))]).wait()
    assert "ended early" in str(exc.value)
    reader.close()


class _Gated:
    """Reader whose one thread holds its first read until released: the queue order is then
    observable (no timing involved)."""

    def __init__(self, path):
        from engine.reader import PREFETCH

        self.path, self.order, self.gate = path, [], threading.Event()
        self.reader = ExpertReader([path], threads=1)
        real = self.reader._run

        def run(job):
            self.gate.wait(30)
            self.order.append(job.offset)
            real(job)

        self.reader._run = run
        self.first = self.reader.submit([self.job(0)], PREFETCH)
        while self.first._units[0].state == 0:  # until the thread holds read 0
            threading.Event().wait(0.001)

    def job(self, offset):
        return ReadJob(self.path, offset, 4, np.zeros(4, np.uint8))


def test_demand_reads_start_before_queued_prefetches(data_file):
    from engine.reader import DEMAND, PREFETCH

    g = _Gated(data_file)
    speculative = g.reader.submit([g.job(1), g.job(2)], PREFETCH)
    demand = g.reader.submit([g.job(3)], DEMAND)
    g.gate.set()
    demand.wait()
    speculative.wait()
    assert g.order == [0, 3, 1, 2]
    g.reader.close()


def test_promoted_prefetch_overtakes_older_prefetches(data_file):
    from engine.reader import PREFETCH

    g = _Gated(data_file)
    older = g.reader.submit([g.job(1)], PREFETCH)
    needed = g.reader.submit([g.job(2)], PREFETCH)
    needed.promote()
    g.gate.set()
    needed.wait()
    older.wait()
    assert g.order == [0, 2, 1]
    g.reader.close()


def test_cancelled_prefetch_never_writes_its_slot(data_file):
    from engine.reader import PREFETCH

    g = _Gated(data_file)
    dest = np.full(4, 7, np.uint8)
    ticket = g.reader.submit([ReadJob(data_file, 10, 4, dest)], PREFETCH)
    assert ticket.cancel() and ticket.done() and ticket.failed()
    assert not g.first.cancel()  # already reading: it completes whole
    g.gate.set()
    g.first.wait()
    g.reader.close()
    assert g.order == [0] and (dest == 7).all()
    with pytest.raises(ExpertReadError):
        ticket.wait()


def test_uncached_reads_leave_the_range_out_of_the_page_cache(tmp_path):
    from outlier_tui.bench import pagecache

    path = tmp_path / "big.bin"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    if pagecache.drop([path], allow_global=False)["resident_fraction"] > 0.01:
        pytest.skip("this file system keeps the file in memory (tmpfs?)")
    for uncached in (False, True):
        reader = ExpertReader([path], uncached=uncached)
        dest = np.zeros(1 << 20, np.uint8)
        reader.submit([ReadJob(path, 0, 1 << 20, dest)]).wait()
        reader.close()
        assert dest.tobytes() == data
        assert (pagecache.resident_fraction([path]) > 0.5) == (not uncached)
        pagecache.drop([path], allow_global=False)


def test_busy_time_counts_overlapping_reads_once(monkeypatch):
    clock = iter([0.0, 4.0, 10.0, 12.0, 12.0])  # read where an interval opens, closes or is asked for
    monkeypatch.setattr("engine.reader.time.perf_counter", lambda: next(clock))
    stats = ReadStats()
    stats.begin()  # t=0
    stats.begin()  # t=1 (busy already)
    stats.add(100, 3.0)  # t=3, one still in flight
    stats.add(100, 3.0)  # t=4: busy 0-4
    stats.begin()  # t=10
    assert stats.busy_and_bytes() == (6.0, 200)  # t=12: 4 s closed + 2 s open
    stats.add(0, 2.0)  # t=12: a failed read ends its interval, no bytes, not a read
    assert stats.reads == 2 and stats.busy_and_bytes()[1] == 200


def test_a_failed_read_still_ends_its_busy_interval(data_file, monkeypatch):
    reader = ExpertReader([data_file], threads=1)

    def fail(*args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "preadv", fail)
    dest = np.zeros(16, np.uint8)
    with pytest.raises(ExpertReadError):
        reader.submit([ReadJob(data_file, 0, 16, dest)]).wait()
    busy, nbytes = reader.stats.busy_and_bytes()
    assert nbytes == 0 and busy == reader.stats.busy_and_bytes()[0]  # closed: no longer grows
    reader.close()


def _resident_pages(path, size: int) -> list[bool]:
    """Which of the file's pages are in the page cache (Linux mincore)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = ctypes.create_string_buffer(pages)
    with open(path, "rb") as f:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, f.fileno(), 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        try:
            assert libc.mincore(addr, size, vec) == 0
        finally:
            libc.munmap(addr, size)
    return [b & 1 == 1 for b in vec.raw]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and fadvise: Linux")
def test_reads_bring_no_neighbours_bytes_through_the_page_cache(tmp_path):
    """With the page cache on, a read still fetches only its own range: the OS's readahead
    would read the next experts' bytes, which the router picks by chance, at the disk's cost."""
    import mmap

    path = tmp_path / "experts.bin"
    size = 16 * 2**20
    path.write_bytes(os.urandom(size))
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    if any(_resident_pages(path, size)):
        pytest.skip("this filesystem keeps the file's pages cached")
    reader = ExpertReader([path], threads=1, uncached=False)
    try:
        offset, nbytes = 4 * 2**20, 256 * 1024  # two neighbouring experts: a sequential read to the OS
        dest = np.zeros(nbytes, np.uint8)
        half = nbytes // 2
        reader.submit(
            [ReadJob(path, offset, half, dest[:half]), ReadJob(path, offset + half, half, dest[half:])]
        ).wait()
    finally:
        reader.close()
    resident = _resident_pages(path, size)
    first, last = offset // mmap.PAGESIZE, (offset + nbytes) // mmap.PAGESIZE
    assert all(resident[first:last])  # the page cache still holds what was read
    assert sum(resident) - (last - first) <= 2  # and nothing else (a boundary page at most)
    assert dest.tobytes() == path.read_bytes()[offset : offset + nbytes]


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 2), (3, 3), (16, 4)])
def test_default_reader_threads_are_four_or_one_per_core(monkeypatch, tmp_path, cores, threads):
    """More reader threads than cores take the decoder's core (GIL hand-offs) and add no
    bandwidth: the default is 4, or the cores this process may run on where fewer."""
    monkeypatch.setattr(reader_module.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert reader_module.default_reader_threads() == threads
    path = tmp_path / "f.bin"
    path.write_bytes(b"\0" * 64)
    reader = reader_module.ExpertReader([path])
    try:
        assert reader.threads == threads
    finally:
        reader.close()

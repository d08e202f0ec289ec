"""--page-cache: forced on/off is obeyed, auto measures the model's own experts and says
what it found; reads past the page cache still fill slots exactly."""

import sys

import numpy as np
import pytest
from checkpoints import resident_oracle
from oracle import greedy_run

from engine import page_cache
from engine.loader import LoadOptions, load_streamed_model


def test_forced_choices_are_obeyed_and_reported(checkpoint_factory):
    path = checkpoint_factory("qwen3_moe")
    off = load_streamed_model(path, None, LoadOptions(page_cache=False, prefetch=False))
    on = load_streamed_model(path, None, LoadOptions(page_cache=True, prefetch=False))
    try:
        assert off.reader.uncached and not on.reader.uncached
        assert off.info.page_cache == "page cache off (--page-cache)"
        assert on.info.page_cache == "page cache on (--page-cache)"
    finally:
        off.close()
        on.close()


def test_auto_measures_and_reports(checkpoint_factory):
    path = checkpoint_factory("qwen3_moe")
    loaded = load_streamed_model(path, None, LoadOptions(prefetch=False))
    try:
        layers = [loaded.index.moe_layers[layer] for layer in loaded.info.moe_layers]
        ranges = page_cache.expert_ranges(layers)
        assert ranges and all(size > 0 for _, _, size in ranges)
        # as a decode reads: experts of every layer, not in file order (the disk's sequential
        # speed is not what a decode sees)
        assert ranges != sorted(ranges)
        text = loaded.info.page_cache
        assert text.startswith(("page cache on:", "page cache off:")) and "x a read from disk" in text
        assert loaded.reader.uncached == text.startswith("page cache off")
    finally:
        loaded.close()


def test_decision_follows_the_margin():
    fast = page_cache.PageCacheDecision(True, disk_s=1.0, cached_s=0.1, nbytes=2**20)
    assert "10.0x" in fast.describe()
    assert page_cache.decide([], forced=None).on  # nothing to measure: the system's default


def test_reads_past_the_page_cache_are_exact(checkpoint_factory):
    path = checkpoint_factory("mixtral")
    model, tokenizer = resident_oracle(path)
    want_tokens, want_logits = greedy_run(model, tokenizer, steps=8)
    info = load_streamed_model(path, None, LoadOptions(prefetch=False, page_cache=False)).info
    loaded = load_streamed_model(path, info.min_cache_bytes, LoadOptions(page_cache=False))
    try:
        got_tokens, got_logits = greedy_run(loaded.model, loaded.tokenizer, steps=8)
        assert got_tokens == want_tokens
        np.testing.assert_array_equal(np.array(got_logits), np.array(want_logits))
    finally:
        loaded.close()


def _cached_pages(path, size: int) -> list[bool]:
    """Which pages of the file's first `size` bytes are in the page cache (Linux mincore)."""
    import ctypes
    import mmap
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        mapped = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
        buf = (ctypes.c_char * size).from_buffer(mapped)
        pages = -(-size // mmap.PAGESIZE)
        vec = (ctypes.c_ubyte * pages)()
        rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size), vec)
        del buf
        mapped.close()
        assert rc == 0, os.strerror(ctypes.get_errno())
        return [bool(v & 1) for v in vec]
    finally:
        os.close(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and POSIX_FADV_DONTNEED: Linux")
def test_a_range_smaller_than_a_page_is_dropped_from_the_page_cache(tmp_path):
    """Expert tensors can be smaller than a page: dropping one must drop the pages it is in
    (the kernel drops only whole pages inside the range given), else reads 'past the page
    cache' hit it and the load-time measurement compares the page cache with itself."""
    import mmap
    import os

    page = mmap.PAGESIZE
    path = tmp_path / "experts.bin"
    path.write_bytes(os.urandom(8 * page))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages are not dropped
        # read back as the reader reads (no readahead), not as written: a kernel may keep
        # written pages in large folios, which a range inside them cannot drop
        page_cache.forget(fd, 0, 8 * page)
        page_cache.no_readahead(fd)
        for i in range(8):
            os.pread(fd, page, i * page)
        if not all(_cached_pages(path, 8 * page)):
            pytest.skip("this filesystem does not keep the file in the page cache")
        page_cache.forget(fd, 6 * page, page)  # exactly page 6: what any kernel drops
        if _cached_pages(path, 8 * page)[6]:
            pytest.skip("this filesystem ignores POSIX_FADV_DONTNEED")
        page_cache.forget(fd, page + 100, 200)  # inside page 1
        page_cache.forget(fd, 3 * page + page // 2, page)  # across pages 3 and 4
        cached = _cached_pages(path, 8 * page)
    finally:
        os.close(fd)
    assert cached == [True, False, True, False, False, True, False, True]

"""The SSD reader: exact bytes into the slot views, conversions, and clear errors."""

import errno
import os

import numpy as np
import pytest

from engine.errors import ExpertReadError
from engine.reader import ExpertReader, ReadJob


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
        assert d.tobytes() == raw[7 * i:7 * i + 100]
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

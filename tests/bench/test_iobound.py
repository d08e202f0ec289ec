"""The I/O-bound study: skips with a clear message where reads cannot be
throttled; where they can (root, blkio/io controller, a block device), a tiny
checkpoint run yields the five figures, exact tokens, a table and a PNG."""

import json
import math
import os
import statistics
import struct
from pathlib import Path

import pytest

from outlier_tui.bench import iobound, iobound_report, plot, throttle


def test_files_off_a_block_device_cannot_be_throttled(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm here")
    f = shm / f"outlier-test-{os.getpid()}"
    f.write_bytes(b"x")
    try:
        device, why = throttle.disk_of([f])
    finally:
        f.unlink()
    assert device is None and "not on a block device" in why


def test_disk_of_names_the_whole_disk(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"x")
    device, why = throttle.disk_of([f])
    if device is None:
        pytest.skip(why)
    major, minor = device.split(":")
    assert Path(f"/sys/dev/block/{device}").exists() and int(major) >= 0 and int(minor) >= 0
    assert not Path(f"/sys/dev/block/{device}/partition").exists()


def test_skips_with_the_reason_where_reads_cannot_be_throttled(checkpoint_factory, monkeypatch):
    monkeypatch.setattr(
        throttle.ReadThrottle, "create", classmethod(lambda cls, files, bps: (None, "not root: cannot create a cgroup"))
    )
    monkeypatch.setattr(iobound.ReadThrottle, "create", throttle.ReadThrottle.create)
    result = iobound.run(iobound.Options(model_dir=checkpoint_factory("mixtral"), tokens=2))
    assert result["skipped"] == "reads cannot be throttled here: not root: cannot create a cgroup"
    assert "skipped: reads cannot be throttled here" in iobound_report.markdown(result)


def test_host_overhead_runs_alone_without_a_throttle(checkpoint_factory, tmp_path):
    result = iobound.host_overhead(iobound.Options(model_dir=checkpoint_factory("mixtral"), tokens=4, host_rounds=2))
    runs = result["runs"]
    assert len(runs) == 2 and all(run["decode_tokens"] >= 1 and run["cache_bytes"] > 0 for run in runs)
    for run in runs:
        assert run["compute_tokens_per_s"] > 0
        assert run["overhead_ms_per_token"] == iobound.overhead_ms(run, run["compute_tokens_per_s"])
    assert result["host_overhead_ms_per_token"] == statistics.median(r["overhead_ms_per_token"] for r in runs)
    assert result["host_cpu_ms_per_token"] == statistics.median(r["host_ms_per_token"] for r in runs)
    text = iobound_report.host_markdown(result)
    assert "host_overhead_ms_per_token (median)" in text and text.count("\n| 2 |") == 1
    iobound_report.write_host_json(result, tmp_path / "host.json")
    saved = json.loads((tmp_path / "host.json").read_text())
    assert set(saved["targets"]) == {"host_overhead_ms_per_token"}


def test_host_overhead_is_decode_time_beyond_compute_and_read_waits():
    streamed = {"decode_tokens_per_s": 4.0, "decode_tokens": 10, "decode_io_wait_s": 0.1}
    assert iobound.overhead_ms(streamed, 5.0) == pytest.approx(250 - 200 - 10)
    assert iobound.overhead_ms(streamed, None) is None
    assert iobound.overhead_ms({"decode_tokens_per_s": 4.0, "decode_tokens": 0}, 5.0) is None


@pytest.fixture(scope="module")
def result(checkpoint_factory):
    path = checkpoint_factory("mixtral")
    files = sorted(path.glob("*.safetensors"))
    probe, why = throttle.ReadThrottle.create(files, 50_000_000)
    if probe is None:
        pytest.skip(f"reads cannot be throttled here: {why}")
    probe.remove()
    return iobound.run(
        iobound.Options(
            model_dir=path, disk_bytes_per_s=50_000_000, tokens=6, long_prompt=False, budgets=[25.0], variants=["today"]
        )
    )


def test_the_five_figures_are_finite(result, tmp_path):
    out = tmp_path / "io.json"
    iobound_report.write_json(result, out)
    data = json.loads(out.read_text())
    for key in iobound.KEYS:
        assert isinstance(data[key], (int, float)) and math.isfinite(data[key]), key
    for key, (op, threshold, _) in iobound_report.TARGETS.items():
        within = data[key] <= threshold if op == "<=" else data[key] >= threshold
        assert data["targets"][key]["met"] is within, key
    assert {(c["budget_percent"], c["name"]) for c in data["configs"]} == {
        (25.0, "off"),
        (25.0, "off+favourites"),
        (25.0, "off+router-score"),
        (25.0, "default"),
        (25.0, "today"),
    }


def test_limit_is_the_larger_of_compute_and_optimal_reads(result):
    for c in result["configs"]:
        assert c["limit_s_per_token"] == max(c["compute_s_per_token"], c["optimal_read_s_per_token"])
        assert c["optimal_misses_per_token"] <= c["lru_misses_per_token"]
        assert c["device_read_bytes"] is not None


def test_throttled_runs_decode_what_the_resident_run_decodes(result):
    for c in result["configs"]:
        assert c["tokens"] == result["compute"]["tokens"]


def test_table_and_plot(result, tmp_path):
    text = iobound_report.markdown(result)
    for key in iobound_report.TARGETS:
        assert key in text
    assert "| 25% | off |" in text and "| 25% | default |" in text
    out = tmp_path / "io.png"
    plot.write_iobound_plot(result, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24])[0] >= 640

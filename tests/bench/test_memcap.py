"""The memory cap really limits a process (where this machine allows cgroups)."""

import sys

import pytest

from outlier_tui.bench.memcap import MemoryCap

MB = 1024 * 1024


def _cap(limit):
    cap, why = MemoryCap.create(limit)
    if cap is None:
        pytest.skip(f"no memory cgroup here: {why}")
    return cap


def _alloc(mb):
    return [sys.executable, "-c", f"import numpy as np; a = np.ones({mb} * 2**20, np.uint8); print(a.sum())"]


def test_process_over_the_limit_is_killed_and_under_it_completes():
    cap = _cap(150 * MB)
    try:
        over = cap.run(_alloc(400), timeout=60)
    finally:
        cap.remove()
    assert over.returncode != 0 and over.oom_kills
    cap = _cap(150 * MB)
    try:
        under = cap.run(_alloc(20), timeout=60)
    finally:
        cap.remove()
    assert under.returncode == 0 and under.group_peak_bytes <= 150 * MB

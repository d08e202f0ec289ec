"""Metal memory handling with the platform faked (this machine has no Metal): the default
budget comes from the recommended working set, the wired limit is raised for the life of
the load as mlx-lm does per generation and restored on close, and a model that cannot be
wired says so in one line."""

import mlx.core as mx
import pytest

from engine import metal_memory
from engine.loader import LoadOptions, load_streamed_model
from engine.metal_memory import DeviceMemory, WiredLimit, budget_memory, device_memory
from engine.pool_plan import default_cache_budget

GB = 1024**3


def test_device_facts_come_from_device_info():
    info = {"max_recommended_working_set_size": 48 * GB, "memory_size": 64 * GB, "architecture": "applegpu_g15d"}
    assert device_memory(info, metal=True) == DeviceMemory(True, 48 * GB, 64 * GB)
    assert device_memory(info, metal=False) == DeviceMemory(False)
    assert device_memory() == DeviceMemory(False)  # this machine: MLX's CPU backend


def test_budget_memory_is_capped_by_the_working_set_on_metal_only():
    mac = DeviceMemory(True, 48 * GB, 64 * GB)
    assert budget_memory(mac, 60 * GB) == 48 * GB
    assert budget_memory(mac, 20 * GB) == 20 * GB
    assert budget_memory(DeviceMemory(False), 60 * GB) == 60 * GB


class FakeWired:
    def __init__(self, current: int = 0) -> None:
        self.current, self.calls = current, []

    def __call__(self, limit: int) -> int:
        self.calls.append(limit)
        old, self.current = self.current, limit
        return old


def test_wired_limit_raised_and_restored():
    fake = FakeWired(current=7)
    wired = WiredLimit(10 * GB, DeviceMemory(True, 48 * GB, 64 * GB), fake)
    assert wired.notice == "" and wired.limit == 48 * GB and fake.current == 48 * GB
    wired.close()
    assert fake.calls == [48 * GB, 7] and wired.limit is None
    wired.close()  # once only
    assert fake.calls == [48 * GB, 7]


def test_too_big_to_wire_says_so():
    fake = FakeWired()
    wired = WiredLimit(50 * GB, DeviceMemory(True, 48 * GB, 64 * GB), fake)
    assert "51,200 MB" in wired.notice and "49,152 MB" in wired.notice and "--cache-mb" in wired.notice
    assert fake.calls == [48 * GB]  # still wires what it can


def test_off_metal_nothing_is_touched():
    fake = FakeWired()
    wired = WiredLimit(50 * GB, DeviceMemory(False), fake)
    wired.close()
    assert fake.calls == [] and wired.notice == ""


@pytest.fixture
def fake_mac(monkeypatch):
    """A Mac whose recommended working set is `size` bytes; returns the fake wired limit."""
    fake = FakeWired(current=3)

    def install(size: int) -> FakeWired:
        mac = DeviceMemory(True, size, 2 * size)
        monkeypatch.setattr(metal_memory, "device_memory", lambda info=None, metal=None: mac)
        monkeypatch.setattr(mx, "set_wired_limit", fake)
        return fake

    return install


def test_loader_budget_and_wired_limit_on_a_faked_mac(checkpoint_factory, fake_mac):
    path = checkpoint_factory("qwen3_moe")
    plain = load_streamed_model(path, None, LoadOptions(prefetch=False))
    info = plain.info
    plain.close()
    working_set = info.resident_bytes + info.total_expert_bytes // 2  # far below this machine's free memory
    fake = fake_mac(working_set)
    loaded = load_streamed_model(path, None, LoadOptions(prefetch=False))
    want = default_cache_budget(info.total_expert_bytes, info.min_cache_bytes, info.resident_bytes, working_set)
    assert loaded.info.cache_budget_bytes == want < info.cache_budget_bytes
    assert fake.calls == [working_set] and not loaded.info.notice
    loaded.close()
    assert fake.calls == [working_set, 3]


def test_loader_says_when_the_cache_cannot_be_wired(checkpoint_factory, fake_mac):
    path = checkpoint_factory("qwen3_moe")
    fake_mac(1024)  # a working set smaller than the backbone
    loaded = load_streamed_model(path, None, LoadOptions(prefetch=False))
    try:
        assert "wired" in loaded.info.notice and "--cache-mb" in loaded.info.notice
    finally:
        loaded.close()

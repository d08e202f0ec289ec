"""Apple-silicon memory facts the loader acts on (Metal only; a no-op elsewhere).

On a Mac the GPU reads the same memory the CPU does, but only up to Metal's
recommended working set (`mx.device_info()["max_recommended_working_set_size"]`,
about 75% of RAM), and pages the GPU touches can be taken back by the system
unless they are wired. mlx-lm wraps each generation in `wired_limit`, which
raises MLX's wired limit to the recommended working set for the call. The
streamed engine keeps its backbone and its expert pool for as long as the model
is loaded, so it does the same for the life of the load (`WiredLimit`), and
says so in one line when backbone + pool exceed what can be wired. Its default
budget is taken from the lesser of free memory and the recommended working set.

Every platform fact comes through `device_memory(info)`, so tests fake a Mac here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MB = 1024 * 1024


@dataclass(frozen=True)
class DeviceMemory:
    metal: bool
    recommended_working_set: int | None = None  # bytes Metal can keep resident for the GPU
    memory_size: int | None = None  # all unified memory


def device_memory(info: dict[str, Any] | None = None, metal: bool | None = None) -> DeviceMemory:
    """This machine's facts (or those of `info`, a `mx.device_info()` dict, for tests)."""
    if info is None or metal is None:
        import mlx.core as mx

        metal = mx.metal.is_available() if metal is None else metal
        info = dict(mx.device_info()) if info is None else info
    if not metal:
        return DeviceMemory(False)
    recommended = info.get("max_recommended_working_set_size")
    size = info.get("memory_size")
    return DeviceMemory(True, int(recommended) if recommended else None, int(size) if size else None)


def budget_memory(device: DeviceMemory, available: int) -> int:
    """The memory the default cache budget is a share of: free memory, and on Metal no more
    than the recommended working set (beyond it the GPU's pages are not kept resident)."""
    if device.metal and device.recommended_working_set:
        return min(available, device.recommended_working_set)
    return available


class WiredLimit:
    """MLX's wired limit raised to the recommended working set while a model is loaded (as
    mlx-lm's `wired_limit` does per generation), restored by close(). `notice`: one line for
    the user when backbone + expert pool do not fit in it, or "" (also off Metal)."""

    def __init__(self, needed_bytes: int, device: DeviceMemory, set_limit: Callable[[int], int] | None = None) -> None:
        self.notice = ""
        self.limit: int | None = None
        self._old: int | None = None
        self._set = set_limit
        recommended = device.recommended_working_set
        if not device.metal or not recommended:
            return
        if self._set is None:
            import mlx.core as mx

            self._set = mx.set_wired_limit
        if needed_bytes > recommended:
            self.notice = (
                f"The backbone and expert cache need {needed_bytes / MB:,.0f} MB but Metal keeps at most "
                f"{recommended / MB:,.0f} MB wired; the rest may be paged out and run slowly. "
                "Use a smaller --cache-mb."
            )
        self._old = self._set(recommended)
        self.limit = recommended

    def close(self) -> None:
        """Back to the limit before the load (after the GPU has finished with the model)."""
        if self._old is not None and self._set is not None:
            _synchronize()  # the limit must not change under a running evaluation (mlx-lm does the same)
            self._set(self._old)
            self._old = None
            self.limit = None


def _synchronize() -> None:
    try:
        import mlx.core as mx

        mx.synchronize()
    except (ImportError, RuntimeError):
        pass

"""Run a command inside a memory limit (a child cgroup with memory.max or, on
cgroup v1, memory.limit_in_bytes), where this machine allows it: root and a
memory controller we can create a group under. Says why when it cannot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from outlier_tui.bench.cgroup import ChildGroup, GroupResult


@dataclass
class CapResult(GroupResult):
    group_peak_bytes: int | None  # the group's peak charge (includes its page cache)
    oom_kills: int | None


class MemoryCap(ChildGroup):
    """A fresh child cgroup with a memory limit; remove() when done."""

    def __init__(self, path, version: int, limit_bytes: int) -> None:
        super().__init__(path, version)
        self.limit_bytes = limit_bytes

    @classmethod
    def create(cls, limit_bytes: int) -> tuple[MemoryCap | None, str]:
        """(cap, "") or (None, why it is not possible here)."""
        path, version, why = ChildGroup.make("memory", "memory")
        if path is None:
            return None, why
        cap = cls(path, version, limit_bytes)
        try:
            limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
            (path / limit_file).write_text(f"{limit_bytes}\n")
            if version == 2 and (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0\n")
        except OSError as exc:
            cap.remove()
            return None, f"cannot set a memory limit on {path} ({exc.strerror or exc})"
        return cap, ""

    def run(self, argv: Sequence[str], timeout: float) -> CapResult:
        res = super().run(argv, timeout)
        return CapResult(
            res.returncode, res.seconds, res.stderr_tail, group_peak_bytes=self._peak(), oom_kills=self._oom_kills()
        )

    def _peak(self) -> int | None:
        text = self.read("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")
        try:
            return int(text.split()[0]) if text else None
        except (ValueError, IndexError):
            return None

    def _oom_kills(self) -> int | None:
        text = self.read("memory.events" if self.version == 2 else "memory.oom_control")
        if text is None:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

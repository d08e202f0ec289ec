"""Run a command inside a memory limit (a child cgroup with memory.max or, on
cgroup v1, memory.limit_in_bytes), where this machine allows it: root and a
memory controller we can create a group under. Says why when it cannot."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass
class CapResult:
    returncode: int
    seconds: float
    group_peak_bytes: int | None  # the group's peak charge (includes its page cache)
    oom_kills: int | None
    stderr_tail: str


class MemoryCap:
    """A fresh child cgroup with a memory limit; remove() when done."""

    def __init__(self, path: Path, version: int, limit_bytes: int) -> None:
        self.path, self.version, self.limit_bytes = path, version, limit_bytes

    @classmethod
    def create(cls, limit_bytes: int) -> tuple["MemoryCap | None", str]:
        """(cap, "") or (None, why it is not possible here)."""
        if os.geteuid() != 0:
            return None, "not root: cannot create a cgroup"
        base, version = _own_memory_cgroup()
        if base is None:
            return None, "no cgroup memory controller is mounted for this process"
        path = base / f"outlier-bench-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
            limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
            (path / limit_file).write_text(f"{limit_bytes}\n")
            if version == 2 and (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0\n")
        except OSError as exc:
            try:
                path.rmdir()
            except OSError:
                pass
            return None, f"cannot create a memory-limited cgroup under {base} ({exc.strerror or exc})"
        return cls(path, version, limit_bytes), ""

    def run(self, argv: Sequence[str], timeout: float) -> CapResult:
        """Run argv with its process placed in the group before it starts."""
        procs = self.path / "cgroup.procs"

        def enter() -> None:
            procs.write_text(f"{os.getpid()}\n")

        start = time.perf_counter()
        try:
            done = subprocess.run(list(argv), preexec_fn=enter, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, timeout=timeout)
            code, err = done.returncode, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, err = -9, f"timed out after {timeout:.0f} s\n{exc.stderr or ''}"
        return CapResult(code, time.perf_counter() - start, self._peak(), self._oom_kills(),
                         (err or "").strip()[-600:])

    def _peak(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _oom_kills(self) -> int | None:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def _own_memory_cgroup() -> tuple[Path | None, int]:
    """This process's memory cgroup folder and the cgroup version (v1 preferred when
    the memory controller lives there)."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    own = Path("/proc/self/cgroup").read_text().splitlines()
    for line in mounts:
        parts = line.split()
        if len(parts) > 3 and parts[2] == "cgroup" and "memory" in parts[3].split(","):
            for entry in own:
                _, controllers, rel = entry.split(":", 2)
                if "memory" in controllers.split(","):
                    return Path(parts[1]) / rel.lstrip("/"), 1
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2":
            root = Path(parts[1])
            rel = next((e.split(":", 2)[2] for e in own if e.startswith("0::")), "/")
            base = root / rel.lstrip("/")
            try:
                if "memory" in (base / "cgroup.controllers").read_text().split():
                    return base, 2
            except OSError:
                continue
    return None, 0

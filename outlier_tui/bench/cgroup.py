"""A child cgroup of this process's own group that runs one command: the
common part of the memory cap (outlier_tui.bench.memcap) and the read throttle
(outlier_tui.bench.throttle). Creating one needs root and the controller mounted."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class GroupResult:
    returncode: int
    seconds: float
    stderr_tail: str


class ChildGroup:
    """A fresh child cgroup; subclasses write its limits. remove() when done."""

    def __init__(self, path: Path, version: int) -> None:
        self.path, self.version = path, version

    @staticmethod
    def make(controller_v1: str, controller_v2: str) -> tuple[Path | None, int, str]:
        """(new group folder, cgroup version, "") or (None, 0, why not)."""
        if os.geteuid() != 0:
            return None, 0, "not root: cannot create a cgroup"
        base, version = own_cgroup(controller_v1, controller_v2)
        if base is None:
            return None, 0, f"no cgroup {controller_v1}/{controller_v2} controller is mounted for this process"
        path = base / f"outlier-bench-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
        except OSError as exc:
            return None, 0, f"cannot create a cgroup under {base} ({exc.strerror or exc})"
        return path, version, ""

    def run(self, argv: Sequence[str], timeout: float) -> GroupResult:
        """Run argv with its process placed in the group before it starts."""
        procs = self.path / "cgroup.procs"

        def enter() -> None:
            procs.write_text(f"{os.getpid()}\n")

        start = time.perf_counter()
        try:
            done = subprocess.run(
                list(argv),
                preexec_fn=enter,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout,
            )
            code, err = done.returncode, done.stderr
        except subprocess.TimeoutExpired as exc:
            partial = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
            code, err = -9, f"timed out after {timeout:.0f} s\n{partial or ''}"
        return GroupResult(code, time.perf_counter() - start, (err or "").strip()[-600:])

    def read(self, name: str) -> str | None:
        try:
            return (self.path / name).read_text()
        except OSError:
            return None

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def own_cgroup(controller_v1: str, controller_v2: str) -> tuple[Path | None, int]:
    """This process's cgroup folder for a controller and the cgroup version (v1 preferred
    when the controller lives there)."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    own = Path("/proc/self/cgroup").read_text().splitlines()
    for line in mounts:
        parts = line.split()
        if len(parts) > 3 and parts[2] == "cgroup" and controller_v1 in parts[3].split(","):
            for entry in own:
                _, controllers, rel = entry.split(":", 2)
                if controller_v1 in controllers.split(","):
                    return Path(parts[1]) / rel.lstrip("/"), 1
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2":
            root = Path(parts[1])
            rel = next((e.split(":", 2)[2] for e in own if e.startswith("0::")), "/")
            base = root / rel.lstrip("/")
            try:
                if controller_v2 in (base / "cgroup.subtree_control").read_text().split():
                    return base, 2
            except OSError:
                continue
    return None, 0

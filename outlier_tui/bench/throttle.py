"""Cap a command's read bandwidth from the disk that holds the model: a child
cgroup with blkio.throttle.read_bps_device (cgroup v1) or io.max rbps=
(cgroup v2) on that disk. This emulates, on a fast disk and a slow CPU, the
regime Outlier is for (reads 85-90% of a token). Needs root, the controller,
and model files on a real block device; `create` says why when it cannot."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from outlier_tui.bench.cgroup import ChildGroup, GroupResult

_SYS_BLOCK = Path("/sys/dev/block")


@dataclass
class ThrottledResult(GroupResult):
    device_read_bytes: int | None  # what the group read from the throttled disk


def disk_of(files: Iterable[Path], sys_block: Path = _SYS_BLOCK) -> tuple[str | None, str]:
    """("major:minor" of the whole disk holding every file, "") or (None, why not)."""
    devices = {os.stat(f).st_dev for f in files}
    if len(devices) != 1:
        return None, "the model files lie on more than one device"
    dev = devices.pop()
    node = sys_block / f"{os.major(dev)}:{os.minor(dev)}"
    if not node.exists():
        return None, (
            f"the model files are not on a block device (device {os.major(dev)}:{os.minor(dev)}: "
            "overlay, tmpfs or network file system), so reads cannot be throttled"
        )
    if (node / "partition").exists():  # throttles apply to whole disks
        node = node.resolve().parent
    try:
        return (node / "dev").read_text().strip(), ""
    except OSError as exc:
        return None, f"cannot read the disk number of {node} ({exc.strerror or exc})"


class ReadThrottle(ChildGroup):
    """A fresh child cgroup whose reads from one disk are capped; remove() when done."""

    def __init__(self, path, version: int, device: str, bytes_per_s: int) -> None:
        super().__init__(path, version)
        self.device, self.bytes_per_s = device, bytes_per_s

    @classmethod
    def create(cls, files: Sequence[Path], bytes_per_s: int) -> tuple[ReadThrottle | None, str]:
        """(throttle, "") or (None, why it is not possible here)."""
        device, why = disk_of(files)
        if device is None:
            return None, why
        path, version, why = ChildGroup.make("blkio", "io")
        if path is None:
            return None, why
        throttle = cls(path, version, device, bytes_per_s)
        name, line = (
            ("blkio.throttle.read_bps_device", f"{device} {bytes_per_s}")
            if version == 1
            else ("io.max", f"{device} rbps={bytes_per_s}")
        )
        try:
            (path / name).write_text(line + "\n")
        except OSError as exc:
            throttle.remove()
            return None, f"cannot throttle reads of disk {device} ({exc.strerror or exc})"
        return throttle, ""

    def run(self, argv: Sequence[str], timeout: float) -> ThrottledResult:
        before = self.read_bytes()
        res = super().run(argv, timeout)
        after = self.read_bytes()
        read = after - before if after is not None and before is not None else None
        return ThrottledResult(res.returncode, res.seconds, res.stderr_tail, device_read_bytes=read)

    def read_bytes(self) -> int | None:
        """Bytes the group has read from the throttled disk so far."""
        if self.version == 1:
            text = self.read("blkio.throttle.io_service_bytes") or ""
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[0] == self.device and parts[1] == "Read":
                    return int(parts[2])
            return 0 if text else None
        stat = self.read("io.stat")
        if stat is None:
            return None
        for line in stat.splitlines():
            parts = line.split()
            if parts and parts[0] == self.device:
                fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
                return int(fields.get("rbytes", 0))
        return 0


def run_throttled(files: Sequence[Path], bytes_per_s: int, command: str, study: Callable[[ReadThrottle], dict]) -> dict:
    """study(throttle) with reads of `files`' disk capped, the group removed after; where reads
    cannot be throttled, {"skipped": why, "command": command} instead."""
    throttle, why = ReadThrottle.create(files, bytes_per_s)
    if throttle is None:
        return {"skipped": f"reads cannot be throttled here: {why}", "command": command}
    try:
        return study(throttle)
    finally:
        throttle.remove()

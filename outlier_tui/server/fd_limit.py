"""Open files for `outlier serve`: the soft limit raised to the hard one, and a cap on connections under it.

Each connection is a file descriptor; so are the model's shards. mlx-lm sets
the limit to (2048, 4096) when imported, which lowers the hard limit for good
(and fails with a traceback where the hard limit is under 4096), so the server
imports it with that call held back, then raises the soft limit to the hard
one itself. The connection cap stays well under the limit: past the cap,
uvicorn answers 503 on up to overflow(cap) more connections and any beyond
those are closed on arrival (connections.GuardedH11Protocol), and FD_RESERVE
files are left for the model and the rest.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator

FD_RESERVE = 256  # model shards, pipes, the event loop's own files
DEFAULT_MAX_CONNECTIONS = 4096
MIN_CONNECTIONS = 16


@contextlib.contextmanager
def _open_file_limit_kept() -> Iterator[None]:
    real = resource.setrlimit

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        if which != resource.RLIMIT_NOFILE:
            real(which, limits)

    resource.setrlimit = setrlimit  # type: ignore[assignment]
    try:
        yield
    finally:
        resource.setrlimit = real


def import_mlx_lm() -> None:
    """Import mlx_lm.utils without its fixed open-file limit (see the module's docstring)."""
    with _open_file_limit_kept():
        import mlx_lm.utils  # noqa: F401


def raise_soft_limit() -> tuple[int, int]:
    """Raise the soft open-file limit as far as the hard one allows; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # macOS reports an unlimited hard limit but refuses a soft one above OPEN_MAX (10240).
    for target in (hard, 1 << 20, 10240):
        if target == resource.RLIM_INFINITY or target <= soft or (hard != resource.RLIM_INFINITY and target > hard):
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        break
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def overflow(max_connections: int) -> int:
    """Connections past the cap that are still answered (503) rather than closed at once."""
    return max(4, max_connections // 4)


def files_needed(max_connections: int) -> int:
    return max_connections + overflow(max_connections) + FD_RESERVE


def connection_cap(requested: int | None, soft: int, hard: int) -> int | str:
    """The connection cap for this open-file limit, or why none fits (one line)."""
    if soft == resource.RLIM_INFINITY:
        return requested or DEFAULT_MAX_CONNECTIONS
    fits = max(0, (soft - FD_RESERVE) * 4 // 5)
    while fits and files_needed(fits) > soft:
        fits -= 1
    if requested is not None:
        if requested > fits:
            return (
                f"--max-connections {requested} needs {files_needed(requested)} open files but this process "
                f"may open {soft} (hard limit {_show(hard)}): raise it (ulimit -n) or lower --max-connections."
            )
        return requested
    if fits < MIN_CONNECTIONS:
        return (
            f"this process may open only {soft} files (hard limit {_show(hard)}); the server needs at least "
            f"{files_needed(MIN_CONNECTIONS)}: raise it (ulimit -n 8192)."
        )
    return min(DEFAULT_MAX_CONNECTIONS, fits)


def _show(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)

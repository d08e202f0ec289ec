"""Text every front-end shows the same way: byte counts, errors, the stats line, statuses."""

from __future__ import annotations

from engine.api import GenerationStats

# What a stored answer's status means, for people. Complete answers need no label.
STATUS_LABELS = {"cancelled": "stopped", "error": "failed", "partial": "interrupted"}
STATUS_NOTES = {
    "cancelled": "stopped: the text above is what was generated",
    "error": "failed",
    "partial": "interrupted: Outlier stopped before this answer finished",
}


def human_bytes(n: float) -> str:
    """Bytes in binary units with three significant-ish digits: '812 MiB', '5.50 GiB'."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.2f} {unit}" if abs(n) < 10 else f"{n:.1f} {unit}" if abs(n) < 100 else f"{n:.0f} {unit}"
        n /= 1024
    raise AssertionError("unreachable: the loop returns at TiB")


def one_line(exc: BaseException) -> str:
    """An exception as one line for `outlier: ...` messages (never a traceback).

    Outlier's own errors already say what to do, so they are shown as they are."""
    from engine.errors import OutlierError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, OutlierError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def hit_rate(hits: int, misses: int) -> str:
    total = hits + misses
    return f"{hits / total:.0%}" if total else "n/a"


def stats_line(stats: GenerationStats, rss_bytes: int | None = None) -> str:
    """The one line shown under every finished answer, in every front-end."""
    parts = [
        f"{stats.generation_tokens} tok",
        f"{stats.generation_tps:.1f} tok/s",
        f"first token {stats.time_to_first_token:.2f}s",
        f"prompt {stats.prompt_tokens} tok @ {stats.prompt_tps:.0f} tok/s",
    ]
    if stats.cached_tokens:
        parts[-1] += f" ({stats.cached_tokens} cached{' on disk' if stats.cache_source == 'disk' else ''})"
    # A remote server other than Outlier reports neither (None, engine.remote): say nothing, not zeros.
    hits, misses = stats.expert_hits, stats.expert_misses
    if hits is not None and misses is not None and hits + misses:
        parts.append(f"experts {hit_rate(hits, misses)} hit")
    if rss := rss_bytes or stats.peak_rss_bytes:
        parts.append(f"RSS {human_bytes(rss)}")
    if stats.notice:  # e.g. a prompt-cache file that was ignored
        parts.append(stats.notice)
    return " · ".join(parts)

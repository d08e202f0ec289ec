"""The /stats table of the plain REPL: throughput, expert cache, reads and memory."""

from __future__ import annotations

from engine.api import GenerationStats, TelemetrySnapshot
from outlier_tui.core.format import hit_rate, human_bytes


def snapshot_table(snap: TelemetrySnapshot, last: GenerationStats | None = None) -> str:
    """The /stats report: throughput, expert cache, reads and memory."""
    hits, misses = int(snap.hits.sum()), int(snap.misses.sum())
    rows: list[tuple[str, str]] = []
    if snap.model is not None and snap.telemetry_note:
        rows.append(("model", f"{snap.model.path} (on a server that sends no expert telemetry)"))
    elif snap.model is not None:
        m = snap.model
        rows.append(
            (
                "model",
                f"{m.path} ({m.model_type}, {len(m.moe_layers)} MoE layers × {m.num_experts} experts, top-{m.top_k})",
            )
        )
    rows.append(("state", snap.state.value + (f" — {snap.error}" if snap.error else "")))
    rows.append(("speed", f"generation {snap.generation_tps:.1f} tok/s, prompt {snap.prompt_tps:.0f} tok/s"))
    if last is not None:
        experts = (
            f", {last.expert_hits} hits / {last.expert_misses} misses"
            if last.expert_hits is not None and last.expert_misses is not None
            else ""  # unknown: a remote server that does not say
        )
        first = f"first token after {last.time_to_first_token:.2f} s"
        rows.append(("last answer", f"{last.generation_tokens} tok, {first}{experts}"))
    if snap.telemetry_note:  # a remote server without telemetry: the rest would be zeros, not figures
        rows.append(("experts, memory", snap.telemetry_note))
        return _table(rows)
    rows.append(("experts", f"{hits} hits, {misses} misses, hit rate {hit_rate(hits, misses)}"))
    avg = f", avg {snap.read_seconds / snap.reads * 1000:.1f} ms/read" if snap.reads else ""
    rows.append(
        (
            "SSD reads",
            f"{snap.reads} reads, {human_bytes(snap.bytes_read)}{avg}, decoder waited {snap.io_wait_seconds:.2f} s",
        )
    )
    if snap.prefetch_issued:
        rows.append(("prefetch", f"{snap.prefetch_used} of {snap.prefetch_issued} used"))
    rows.append(
        (
            "memory",
            f"RSS {human_bytes(snap.rss_bytes)} (peak {human_bytes(snap.peak_rss_bytes)}), "
            f"resident weights {human_bytes(snap.resident_weight_bytes)}",
        )
    )
    slots = f", {snap.model.cache_slots} slots" if snap.model is not None else ""
    rows.append(
        (
            "expert cache",
            f"{human_bytes(snap.cache_bytes)} of {human_bytes(snap.cache_budget_bytes)} "
            f"budget (peak {human_bytes(snap.cache_peak_bytes)}){slots}",
        )
    )
    return _table(rows)


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

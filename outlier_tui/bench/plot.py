"""`outlier bench --plot`: the figures of a run as a PNG, drawn with matplotlib
(the optional `bench` extra, so the chat app never needs it).

- `outlier bench`: decode tok/s and expert hit rate against the cache budget;
  the streamed engine with prefetch off and on, mlx-lm with every weight
  resident, and the offline-optimal (Belady) hit rate on the same routing.
- `outlier bench --io-bound`: seconds per decode token of every configuration
  next to that run's limit (max of compute only and optimal reads).

Both draw from the run's JSON alone, so `outlier bench --replot JSON --plot PNG`
redraws a saved run without measuring again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from outlier_tui.bench.orchestrate import Figures

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL = "pip install 'outlier[bench]'"
OFF, ON, RESIDENT, OPTIMAL, VARIANT = "#1f77b4", "#ff7f0e", "#555555", "#2ca02c", "#9e9e9e"
DPI = 120


def unavailable() -> str | None:
    """Why --plot cannot draw here (one line saying how to fix it), or None when it can."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"--plot needs matplotlib, which is not installed: {INSTALL}"
    return None


def write_any(result: Figures, path: str | Path) -> None:
    """The figure that fits a saved run: the I/O-bound one or the budget sweep."""
    if "skipped" in result:
        raise ValueError(f"the run was skipped, so there is nothing to plot ({result['skipped']})")
    if "compute" in result:
        write_iobound_plot(result, path)
    elif "resident" in result:
        write_plot(result, path)
    else:
        raise ValueError("not the JSON of `outlier bench --json` (no resident or compute-only figures)")


def write_plot(result: Figures, path: str | Path) -> None:
    """Decode tok/s and expert hit rate against budget, streamed vs resident vs optimal."""
    fig = _figure((12.5, 5.6))
    speed_ax, hit_ax = fig.subplots(1, 2)
    configs = [c for c in result["configs"] if c.get("headline")]
    total = result["model"].get("total_expert_bytes")
    budgets = sorted({c["budget_percent"] for c in configs})

    resident = result["resident"].get("headline", {}).get("decode_tokens_per_s")
    if resident:
        speed_ax.axhline(resident, color=RESIDENT, linestyle="--", linewidth=1.5, label="mlx-lm, every weight resident")
    for prefetch, color, marker in ((False, OFF, "o"), (True, ON, "s")):
        points = _series(configs, prefetch, "decode_tokens_per_s")
        if points:
            speed_ax.plot(*zip(*points), color=color, marker=marker, linewidth=2, label=_streamed_label(prefetch))
    speed_ax.set_title("Decode speed (higher is better)")
    speed_ax.set_ylabel("decode tokens / s (median of warm passes)")
    speed_ax.set_ylim(bottom=0, top=speed_ax.get_ylim()[1] * 1.08)

    for prefetch, color, marker in ((False, OFF, "o"), (True, ON, "s")):
        points = _series(configs, prefetch, "hit_rate")
        if points:
            hit_ax.plot(*zip(*points), color=color, marker=marker, linewidth=2, label=_streamed_label(prefetch))
    optimal = sorted(
        (c["budget_percent"], c["replay"]["optimal_hit_rate"]) for c in configs if not c["prefetch"] and c.get("replay")
    )
    if optimal:
        hit_ax.plot(
            *zip(*optimal),
            color=OPTIMAL,
            marker="^",
            linestyle=":",
            linewidth=2,
            label="optimal cache (Belady, same routing)",
        )
    hit_ax.set_title("Expert-cache hit rate (higher is better)")
    hit_ax.set_ylabel("hits / expert uses (warm pass)")
    hit_ax.set_ylim(0, 1.04)
    hit_ax.yaxis.set_major_formatter(_percent())

    for ax in (speed_ax, hit_ax):
        ax.set_xlabel("expert-cache budget, % of all expert bytes")
        ax.set_xlim(0, 105)
        ax.set_xticks(budgets, [_budget_label(b, total) for b in budgets])
        ax.grid(True, color="#e0e0e0")
        ax.legend(loc="lower right", fontsize=9)
    _title(fig, result, "outlier bench")
    fig.savefig(path, dpi=DPI)


def write_iobound_plot(result: Figures, path: str | Path) -> None:
    """Seconds per decode token of each configuration against the limit of that run."""
    configs = [c for c in result.get("configs", []) if c.get("s_per_token")]
    fig = _figure((11.5, 2.8 + 0.55 * max(len(configs), 1)))
    ax = fig.subplots()
    rows = range(len(configs))
    colors = [OFF if c["name"] == "off" else ON if c["name"] == "default" else VARIANT for c in configs]
    ax.barh(list(rows), [c["s_per_token"] for c in configs], color=colors, height=0.6)
    for y, c in zip(rows, configs):
        limit, compute, reads = (
            c.get(k) for k in ("limit_s_per_token", "compute_s_per_token", "optimal_read_s_per_token")
        )
        if limit:
            ax.plot([limit, limit], [y - 0.38, y + 0.38], color="black", linewidth=2.5)
        if compute:
            ax.plot(compute, y, marker="D", color=RESIDENT, markersize=5)
        if reads:
            ax.plot(reads, y, marker="o", color=OPTIMAL, markersize=6, fillstyle="none")
        vs = f" ({c['vs_limit']:.2f}x limit)" if c.get("vs_limit") else ""
        ax.annotate(
            f"{c['s_per_token']:.2f} s{vs}",
            (max(v or 0 for v in (c["s_per_token"], limit, compute, reads)), y),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    for y in range(1, len(configs)):
        if configs[y]["budget_percent"] != configs[y - 1]["budget_percent"]:
            ax.axhline(y - 0.5, color="#bdbdbd", linewidth=1)
    ax.set_yticks(list(rows), [f"{c['budget_percent']:g}% budget, {c['name']}" for c in configs])
    ax.invert_yaxis()
    ax.set_xlim(0, max([c["s_per_token"] for c in configs] + [1e-9]) * 1.3)
    ax.set_xlabel("seconds per decode token (lower is better)")
    ax.grid(True, axis="x", color="#e0e0e0")
    ax.set_axisbelow(True)
    variants = any(color == VARIANT for color in colors)
    fig.legend(handles=_iobound_legend(variants), loc="outside lower center", ncols=3, fontsize=9)
    mbps = result.get("settings", {}).get("disk_bytes_per_s")
    _title(fig, result, "outlier bench --io-bound" + (f", reads capped at {mbps / 1e6:g} MB/s" if mbps else ""))
    fig.savefig(path, dpi=DPI)


def _figure(size: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas: no pyplot, no GUI backend, no global figure list."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _title(fig: Figure, result: Figures, what: str) -> None:
    """The model and the machine, so a figure read on its own says what it measured."""
    model, machine = result.get("model", {}), result.get("machine", {})
    files = model.get("files") or []
    name = Path(files[0]).parent.name if files else model.get("model_type", "model")
    layout = (
        f"{model.get('model_type', '?')}, {model.get('moe_layers', '?')} MoE layers x "
        f"{model.get('num_experts', '?')} experts, top-{model.get('top_k', '?')}"
    )
    memory = machine.get("memory_bytes")
    host = ", ".join(
        part
        for part in (
            machine.get("cpu"),
            f"{machine['cores']} cores" if machine.get("cores") else None,
            f"{memory / 2**30:.0f} GiB RAM" if memory else None,
            f"mlx {machine['mlx']} on {_device(machine.get('mlx_device', ''))}" if machine.get("mlx") else None,
            machine.get("time"),
        )
        if part
    )
    fig.suptitle(f"{what}: {name} ({layout})\n{host}", fontsize=11)


def _device(text: str) -> str:
    """'Device(gpu, 0)' as 'gpu'."""
    return text.removeprefix("Device(").split(",")[0].rstrip(")") or "?"


def _series(configs: list[Figures], prefetch: bool, key: str) -> list[tuple[float, float]]:
    return sorted(
        (c["budget_percent"], c["headline"][key]) for c in configs if c["prefetch"] == prefetch and key in c["headline"]
    )


def _streamed_label(prefetch: bool) -> str:
    return f"streamed, prefetch {'on' if prefetch else 'off'}"


def _budget_label(percent: float, total_bytes: int | None) -> str:
    if not total_bytes:
        return f"{percent:g}%"
    size = total_bytes * percent / 100
    return f"{percent:g}%\n" + (f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB")


def _percent():
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0)


def _iobound_legend(variants: bool) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Patch(color=OFF, label="off: synchronous reads, no prefetch"),
        Patch(color=ON, label="default settings"),
        *([Patch(color=VARIANT, label="one mechanism alone (a variant)")] if variants else []),
        Line2D([], [], color="black", linewidth=2.5, label="limit: max(compute only, optimal reads)"),
        Line2D([], [], color=RESIDENT, marker="D", linestyle="none", label="compute only (every expert resident)"),
        Line2D([], [], color=OPTIMAL, marker="o", fillstyle="none", linestyle="none", label="optimal (Belady) reads"),
    ]

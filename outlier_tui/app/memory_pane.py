"""The memory pane: RSS over time, MLX memory, expert cache vs budget, speeds, SSD reads."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Sparkline, Static

from outlier_tui.app.memory_stats import MemoryView
from outlier_tui.core.format import human_bytes

LABEL_WIDTH = 9


class MemoryPane(Vertical):
    """The latest MemoryView as text rows around a Sparkline of RSS; fed by the app's telemetry timer.

    Without numbers to plot (no telemetry yet, or a server that sends none) only text shows.
    """

    DEFAULT_CSS = """
    MemoryPane { height: auto; }
    MemoryPane > Static { text-wrap: nowrap; text-overflow: ellipsis; }
    MemoryPane > #memory-rss, MemoryPane > Sparkline { height: 1; }
    MemoryPane > #memory-rows { height: 6; }
    MemoryPane.-text-only > #memory-rss, MemoryPane.-text-only > Sparkline { display: none; }
    MemoryPane.-text-only > #memory-rows { height: 8; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view: MemoryView | None = None
        self.add_class("-text-only")

    def compose(self) -> ComposeResult:
        yield Static(id="memory-rss")
        yield Sparkline(id="memory-history")
        yield Static(Content.styled("No telemetry yet", "$text-muted"), id="memory-rows")

    def show(self, view: MemoryView) -> None:
        """Display a new frame."""
        self.view = view
        self._draw()

    def on_resize(self) -> None:
        self._draw()  # the cache bar and the history fit the width

    @property
    def text(self) -> str:
        """The text rows as shown (the RSS history is a Sparkline beside them)."""
        return "\n".join(str(row.render()) for row in self.query(Static) if row.display)

    def _draw(self) -> None:
        view = self.view
        if view is None:
            return
        width = max(10, self.content_size.width)
        rows = self.query_one("#memory-rows", Static)
        self.set_class(view.note is not None, "-text-only")
        if view.note:  # a remote server without telemetry: only the speeds measured here are real
            rows.update(
                Content("\n").join(
                    [
                        Content.styled(view.note, "$text-muted"),
                        _row("Prefill", f"{view.prompt_tps:.1f}", "tok/s"),
                        _row("Decode", f"{view.generation_tps:.1f}", "tok/s"),
                    ]
                )
            )
            return
        self.query_one("#memory-rss", Static).update(
            _row("RSS", human_bytes(view.rss_bytes), f"peak {human_bytes(view.peak_rss_bytes)}")
        )
        history = self.query_one(Sparkline)
        history.data = view.rss_history[-width:]
        history.styles.width = len(history.data)  # one column per sample: a short history is short
        budget = view.cache_budget_bytes
        cache = _row("Experts", f"{human_bytes(view.cache_bytes)}/{human_bytes(budget)}")
        bar_w = width - cache.cell_length - 1
        if budget > 0 and bar_w >= 4:
            filled = min(bar_w, round(bar_w * view.cache_bytes / budget))
            cache = Content.assemble(cache, " ", ("█" * filled, "$accent"), ("░" * (bar_w - filled), "$text-muted"))
        lines = [
            _row("MLX", human_bytes(view.mlx_active_bytes), "active"),
            cache,
            _row("Weights", human_bytes(view.resident_weight_bytes), "resident"),
            _row(
                "KV",
                f"{human_bytes(view.kv_cache_bytes)}/{human_bytes(view.kv_budget_bytes)}",
                f"{view.kv_entries} cached" if view.kv_budget_bytes else "",
            ),
            *(
                [_row("Compute", view.compute_dtype, f"page cache {view.page_cache}" if view.page_cache else "")]
                if view.compute_dtype
                else []
            ),
            _row("Prefill", f"{view.prompt_tps:.1f}", "tok/s"),
            _row("Decode", f"{view.generation_tps:.1f}", "tok/s"),
            _row("SSD", f"{view.read_bytes_per_s / 2**20:.1f} MB/s", f"wait {view.io_wait_seconds:.2f}s"),
        ]
        if view.budget_notice:
            lines.append(Content.styled(view.budget_notice, "$warning"))
        rows.update(Content("\n").join(lines))


def _row(label: str, value: str, extra: str = "") -> Content:
    return Content.assemble(
        (label.ljust(LABEL_WIDTH), "$text-muted"),
        (value, "bold"),
        (" " + extra if extra else "", "$text-muted"),
    )

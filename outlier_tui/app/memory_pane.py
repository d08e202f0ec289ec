"""The memory pane: RSS over time, MLX memory, expert cache vs budget, speeds, SSD reads."""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from outlier_tui.app.memory_stats import MemoryView, sparkline
from outlier_tui.core.format import human_bytes

LABEL_WIDTH = 9
LINES = 8


class MemoryPane(Widget):
    """Renders the latest MemoryView; the app feeds it from the telemetry timer."""

    DEFAULT_CSS = """
    MemoryPane { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view: MemoryView | None = None

    def show(self, view: MemoryView) -> None:
        """Display a new frame."""
        self.view = view
        self.refresh()

    def get_content_height(self, container, viewport, width: int) -> int:
        return LINES

    def render(self) -> Content:
        width = max(10, self.content_size.width)
        view = self.view
        if view is None:
            return Content.styled("No telemetry yet", "$text-muted")

        def row(label: str, value: str, extra: str = "") -> Content:
            return Content.assemble(
                (label.ljust(LABEL_WIDTH), "$text-muted"),
                (value, "bold"),
                (" " + extra if extra else "", "$text-muted"),
            )

        if view.note:  # a remote server without telemetry: only the speeds measured here are real
            return Content("\n").join(
                [
                    Content.styled(view.note, "$text-muted"),
                    row("Prefill", f"{view.prompt_tps:.1f}", "tok/s"),
                    row("Decode", f"{view.generation_tps:.1f}", "tok/s"),
                ]
            )
        budget = view.cache_budget_bytes
        cache = row("Experts", f"{human_bytes(view.cache_bytes)}/{human_bytes(budget)}")
        bar_w = width - cache.cell_length - 1
        if budget > 0 and bar_w >= 4:
            filled = min(bar_w, round(bar_w * view.cache_bytes / budget))
            cache = Content.assemble(cache, " ", ("█" * filled, "$accent"), ("░" * (bar_w - filled), "$text-muted"))
        lines = [
            row("RSS", human_bytes(view.rss_bytes), f"peak {human_bytes(view.peak_rss_bytes)}"),
            Content.styled(sparkline(list(view.rss_history), width), "$primary"),
            row("MLX", human_bytes(view.mlx_active_bytes), "active"),
            cache,
            row("Weights", human_bytes(view.resident_weight_bytes), "resident"),
            row("Prefill", f"{view.prompt_tps:.1f}", "tok/s"),
            row("Decode", f"{view.generation_tps:.1f}", "tok/s"),
            row("SSD", f"{view.read_bytes_per_s / 2**20:.1f} MB/s", f"wait {view.io_wait_seconds:.2f}s"),
        ]
        return Content("\n").join(lines)

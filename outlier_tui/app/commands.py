"""Command palette provider: every app action (and every theme, every chat) by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class OutlierCommands(Provider):
    """Lists the app's actions; the app supplies them via `palette_commands()`."""

    def _entries(self) -> list[tuple[str, str, str]]:
        app = self.app
        entries = getattr(app, "palette_commands", None)
        return entries() if entries else []

    async def discover(self) -> Hits:
        for title, help_text, action in self._entries():
            yield DiscoveryHit(title, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, action in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(title), partial(self.app.run_action, action), text=title, help=help_text
                )

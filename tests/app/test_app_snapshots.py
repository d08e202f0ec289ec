"""Screenshots of the main screen (pytest-textual-snapshot): 80×24 and 160×50, dark and light.

Deterministic: a fixed chat from the store, a synthetic 60×512 telemetry
snapshot, a frozen clock, no timers, no cursor blink.
Update after an intended visual change with: pytest tests/app --snapshot-update
"""

from __future__ import annotations

import pytest
from app_helpers import ready, synthetic_snapshot

from engine.fake import FakeEngine
from outlier_tui.app.prompt_input import PromptInput

ANSWER = """Use slicing: it is the idiomatic way.

```python
def reverse(s: str) -> str:
    \"\"\"Return s backwards.\"\"\"
    return s[::-1]
```

It runs in **O(n)** time."""


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
@pytest.mark.parametrize("theme", ["outlier-dark", "outlier-light"])
def test_main_screen(snap_compare, make_app, store, size, theme):
    chat = store.create_chat("Reverse a string")
    store.add_message(chat.id, "user", "How do I reverse a string in Python?")
    store.add_message(chat.id, "assistant", ANSWER)
    snapshot = synthetic_snapshot()
    app = make_app(
        FakeEngine(),
        model_dir="/models/Qwen3.5-397B-A17B-4bit",
        theme=theme,
        chat=str(chat.id),
        snapshot_source=lambda: snapshot,
    )

    async def run_before(pilot) -> None:
        await ready(pilot)
        pilot.app.query_one(PromptInput).cursor_blink = False
        pilot.app.refresh_telemetry(now=0.0)
        pilot.app.refresh_telemetry(now=0.0)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)

"""What a first-time user meets: the empty chat's welcome, the first run's demo build,
the keys screen (F1), search highlighting (F10), hiding the heatmap (F2) and sending
while the model loads."""

from __future__ import annotations

import threading

from app_helpers import ready, send, wait_until
from textual.widgets import Label, OptionList, Static

from engine.api import LoadProgress
from outlier_tui.app.bindings import COMMAND_BINDINGS
from outlier_tui.app.chat_view import ChatLog
from outlier_tui.app.prompt_input import PromptInput
from outlier_tui.app.screens import KeysScreen, SearchScreen
from outlier_tui.app.status_bar import DEMO_BUILD_TITLE, LOADING_TITLE, ModelStatus


def _welcome(app) -> str:
    welcome = app.query_one(ChatLog).query(".welcome")
    return str(welcome.first(Static).render()) if welcome else ""


async def test_an_empty_chat_says_what_the_demo_is_and_where_every_action_is(make_app):
    app = make_app(demo_model=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        text = " ".join(_welcome(app).split())
        assert "SmolLM2-135M" in text and "toy MoE" in text
        assert "Ctrl+L loads an mlx-community MoE folder" in text and "outlier --model DIR" in text
        assert "Ctrl+P lists every action" in text and "F1 shows the keys" in text
        await send(pilot, "hello")
        assert _welcome(app) == ""  # the conversation takes its place


async def test_a_named_model_gets_no_demo_text(make_app):
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        text = _welcome(app)
        assert "Ctrl+P lists every action" in " ".join(text.split()) and "demo" not in text


async def test_the_first_run_build_says_what_it_costs_and_how_long_it_has_taken(make_app):
    release = threading.Event()
    now = [100.0]

    def resolve(model_dir, on_progress):  # the demo build, on its own thread
        on_progress(LoadProgress(0.3, "clustering experts"))
        release.wait(10)
        return model_dir

    app = make_app(resolve_model=resolve, clock=lambda: now[0])
    async with app.run_test(size=(140, 30)) as pilot:
        status = app.query_one(ModelStatus)
        try:
            await wait_until(lambda: str(status.query_one("#load-message", Label).render()) == "clustering experts")
            assert str(status.query_one("#load-title", Label).render()) == DEMO_BUILD_TITLE
            assert "first run only, ~2 min, ~3.4 GB in the cache" in DEMO_BUILD_TITLE
            now[0] += 75
            status._tick()
            assert str(status.query_one("#load-elapsed", Label).render()) == "1 min 15 s"
        finally:
            release.set()
        await ready(pilot)
        assert not status.display


async def test_sending_while_the_model_loads_says_so_and_keeps_the_message(make_app):
    release = threading.Event()

    def resolve(model_dir, on_progress):
        release.wait(10)
        return model_dir

    app = make_app(resolve_model=resolve)
    async with app.run_test(size=(100, 30)) as pilot:
        try:
            await wait_until(lambda: app.model_state == "loading")
            assert str(app.query_one(ModelStatus).query_one("#load-title", Label).render()) == LOADING_TITLE
            app.query_one(PromptInput).insert("too early")
            await pilot.press("enter")
            await pilot.pause()
            (note,) = [n.message for n in app._notifications]
            assert note == (
                "The model is still loading: send again once the bar says ready. Your message is kept in the box."
            )
            assert app.query_one(PromptInput).text == "too early"
        finally:
            release.set()
        await ready(pilot)


async def test_f1_lists_every_key_as_the_keymap_has_it(make_app, tmp_path):
    keymap = tmp_path / "keymap.toml"
    keymap.write_text('new_chat = "f9"\n')
    app = make_app(keymap_file=keymap)
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, KeysScreen)
        text = str(app.screen.query_one("#keys-list Static", Static).render())
        for binding in COMMAND_BINDINGS:
            assert binding.description in text
        assert "F9" in text and "Ctrl+N" not in text  # the remapped key, not the default
        assert "Ctrl+J / Shift+Enter" in text and "Ctrl+P" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, KeysScreen)


async def test_f10_highlights_the_matches_instead_of_bracketing_them(make_app, store):
    chat = store.create_chat("Code")
    store.add_message(chat.id, "user", "is_palindrome(s) checks [a] list")
    app = make_app(chat=str(chat.id))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("f10")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"palindrome")
        await pilot.pause()
        prompt = app.screen.query_one(OptionList).get_option_at_index(0).prompt
        assert "is_palindrome(s) checks [a] list" in prompt.plain  # brackets only where the text has them
        styled = {prompt.plain[span.start : span.end] for span in prompt.spans if "reverse" in str(span.style)}
        assert styled == {"palindrome"}


async def test_f2_gives_the_chat_the_room_of_the_heatmap(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        chat_pane, memory = app.query_one("#chat-pane"), app.query_one("#memory")
        assert chat_pane.region.width < 120
        await pilot.press("f2")
        await pilot.pause()
        assert chat_pane.region.width == 120  # the whole width
        assert memory.region.y >= chat_pane.region.bottom  # the memory pane: a strip under it
        assert chat_pane.region.height + memory.region.height >= 40 - 2  # no empty rows (top bar, footer)
        await pilot.press("f2")
        await pilot.pause()
        assert chat_pane.region.width < 120

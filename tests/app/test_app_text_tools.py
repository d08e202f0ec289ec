"""Code-block extraction for "copy last code block", export names, chat titles."""

from __future__ import annotations

from pathlib import Path

from outlier_tui.app.text_tools import chat_title_from, code_blocks, export_path, last_code_block

ANSWER = "Try:\n\n```python\ndef f():\n    return 1\n```\n\nor\n\n~~~sh\nls -l\n~~~\n"


def test_code_blocks_and_last():
    assert code_blocks(ANSWER) == ["def f():\n    return 1\n", "ls -l\n"]
    assert last_code_block(ANSWER) == "ls -l\n"
    assert last_code_block("no code here") is None


def test_unclosed_block_of_a_stopped_answer_counts():
    assert last_code_block(ANSWER + "\n```js\nlet a = 1") == "let a = 1"


def test_export_path_is_a_safe_file_name(tmp_path: Path):
    assert export_path("Fix: the / bug?", 7, tmp_path) == tmp_path / "outlier-7-fix-the-bug.md"
    assert export_path("!!!", 2, tmp_path).name == "outlier-2-chat.md"


def test_chat_title_from_first_line():
    assert chat_title_from("\n  How do I sort a dict?\nmore") == "How do I sort a dict?"
    assert len(chat_title_from("x" * 100)) == 40

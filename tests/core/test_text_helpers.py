"""Code blocks for "copy block N", export names, human_bytes and one-line errors."""

from __future__ import annotations

from pathlib import Path

from engine.errors import OutlierError
from outlier_tui.app.text_tools import export_path
from outlier_tui.core.code_blocks import code_block, code_blocks
from outlier_tui.core.format import human_bytes, one_line

ANSWER = "Try:\n\n```python\ndef f():\n    return 1\n```\n\nor\n\n~~~sh\nls -l\n~~~\n"


def test_code_blocks_numbered_and_last():
    assert code_blocks(ANSWER) == ["def f():\n    return 1\n", "ls -l\n"]
    assert code_block(ANSWER) == "ls -l\n"
    assert code_block(ANSWER, 1) == "def f():\n    return 1\n"
    assert code_block(ANSWER, 3) is None and code_block(ANSWER, 0) is None
    assert code_block("no code here") is None


def test_unclosed_block_of_a_stopped_answer_counts():
    assert code_block(ANSWER + "\n```js\nlet a = 1") == "let a = 1"
    assert len(code_blocks(ANSWER + "\n```js\nlet a = 1")) == 3


def test_export_path_is_a_safe_file_name(tmp_path: Path):
    assert export_path("Fix: the / bug?", 7, tmp_path) == tmp_path / "outlier-7-fix-the-bug.md"
    assert export_path("!!!", 2, tmp_path).name == "outlier-2-chat.md"


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(5 * 2**20) == "5.00 MiB"
    assert human_bytes(220 * 2**30) == "220 GiB"
    assert human_bytes(5.5 * 2**30) == "5.50 GiB"
    assert human_bytes(3 * 2**40) == "3.00 TiB"


def test_one_line():
    assert one_line(OutlierError("Do this.\nmore")) == "Do this."
    assert one_line(ValueError("bad\nvalue")) == "ValueError: bad"
    assert one_line(KeyError()) == "KeyError"

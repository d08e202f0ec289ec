"""@path attachments: whole files as fenced blocks, or a one-line refusal."""

from __future__ import annotations

import os

import pytest

from outlier_tui.core.attachments import (
    AttachmentError,
    complete_path,
    expand_attachments,
    strip_attachments,
)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print('hi')\n")
    (tmp_path / "src" / "mod.rs").write_text("fn main() {}")
    (tmp_path / "notes.md").write_text("Use ```code``` fences\n")
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "big.txt").write_text("a" * 3000)
    return tmp_path


def test_files_become_fenced_blocks_headed_by_their_path(project):
    text, files = expand_attachments("Review @src/main.py and @src/mod.rs.", project)
    assert [f.shown_path for f in files] == ["src/main.py", "src/mod.rs"]
    assert text == (
        "Review @src/main.py and @src/mod.rs.\n\n"
        "src/main.py\n```python\nprint('hi')\n```\n\n"
        "src/mod.rs\n```rust\nfn main() {}\n```"
    )


def test_fence_outgrows_fences_in_the_file(project):
    text, _ = expand_attachments("@notes.md", project)
    assert text.endswith("notes.md\n````markdown\nUse ```code``` fences\n````")


def test_plain_at_words_and_fenced_code_stay_text(project):
    message = "@dataclass is nice, mail me@host.org\n```\n@src/main.py\n```"
    assert expand_attachments(message, project) == (message, [])


@pytest.mark.parametrize(
    "mention, reason",
    [
        ("@src", "is a folder"),
        ("@blob.bin", "binary"),
        ("@latin.txt", "not UTF-8"),
        ("@big.txt", "over the 2 KB limit"),
        ("@missing.py", "no such file"),
        ("@nope/x", "no such file"),
    ],
)
def test_refusals_are_one_line(project, mention, reason):
    with pytest.raises(AttachmentError) as info:
        expand_attachments(f"look at {mention} please", project, limit_bytes=2048)
    assert reason in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file(project):
    path = project / "secret.txt"
    path.write_text("x")
    path.chmod(0)
    with pytest.raises(AttachmentError, match="cannot be read"):
        expand_attachments("@secret.txt", project)


def test_completion(project):
    assert complete_path("src/m", project) == ["src/main.py", "src/mod.rs"]
    assert complete_path("s", project) == ["src/"]
    assert complete_path("", project) == ["big.txt", "blob.bin", "latin.txt", "notes.md", "src/"]
    assert complete_path(".h", project) == [".hidden"]
    assert complete_path("nowhere/x", project) == []


def test_editing_gets_back_the_typed_text(project):
    typed = "Compare @src/main.py with @notes.md\n\nand say which is shorter"
    message, _ = expand_attachments(typed, project)
    assert strip_attachments(message) == typed
    assert (
        strip_attachments("no files here\n\nsrc/main.py\n```python\nx\n```")
        == "no files here\n\nsrc/main.py\n```python\nx\n```"
    )  # not mentioned: the user's own text

"""`outlier demo build|info`, and `outlier generate` without --model, which
builds (once) and answers with the demo MoE."""

from __future__ import annotations

from demo_helpers import TEST_EXPERTS, TEST_TOP_K


def test_demo_build_reuses_the_built_model(demo_moe, capsys):
    from outlier_tui.cli import main

    assert main(["demo", "build", "--experts", str(TEST_EXPERTS), "--top-k", str(TEST_TOP_K)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(demo_moe)

    assert main(["demo", "info"]) == 0
    out = capsys.readouterr().out
    assert str(demo_moe) in out and "routing entropy" in out


def test_demo_build_rejects_bad_shapes(capsys):
    from outlier_tui.cli import main

    assert main(["demo", "build", "--experts", "4", "--top-k", "5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "outlier: --top-k must be between 1 and the number of experts (4), not 5"


def test_demo_build_refuses_a_foreign_out_folder(tmp_path, capsys):
    from outlier_tui.cli import main

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["demo", "build", "--experts", "4", "--out", str(tmp_path / "mine")]) == 1
    assert "is not a demo model" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_generate_without_model_answers_with_python_code(demo_moe, monkeypatch, capsys):
    """No --model: the demo MoE is used (8 experts here to keep the test small;
    the default build has 64)."""
    import engine.demo
    from outlier_tui.cli import main

    calls = []
    real = engine.demo.ensure_demo_model

    def small_demo(on_progress=None, experts=64, top_k=2):
        calls.append((experts, top_k))
        return real(on_progress, experts=TEST_EXPERTS, top_k=TEST_TOP_K)

    monkeypatch.setattr(engine.demo, "ensure_demo_model", small_demo)
    rc = main(["generate", "--prompt", "Write a Python function that reverses a string.", "--max-tokens", "40"])
    out = capsys.readouterr().out
    assert rc == 0
    assert calls == [(64, 2)]
    assert "def " in out and "return" in out and "[::-1]" in out

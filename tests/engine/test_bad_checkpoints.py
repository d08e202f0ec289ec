"""Every broken model folder gets one clear line, never a traceback or a hang."""

import json
import math
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
    data[8 : 8 + 20] = b"\x00garbage-not-json!!!"
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


# ---- the strict validator (engine/checkpoint_rules.py): issue 14's reproductions ----------


def _config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def _header(file):
    raw = file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write_header(file, header_json: bytes, data: bytes):
    file.write_bytes(struct.pack("<Q", len(header_json)) + header_json + data)


def _mutate_header(path, mutate):
    """mutate(header dict) edits entries in place or returns raw header bytes to write."""
    file = path / "model.safetensors"
    header, data = _header(file)
    raw = mutate(header)
    _write_header(file, raw if isinstance(raw, bytes) else json.dumps(header).encode(), data)


def _repack(path, change):
    """Rewrite model.safetensors with `change(name, meta)` applied to one tensor's dtype/shape,
    offsets recomputed so the file is otherwise valid (each tensor keeps its leading bytes)."""
    from engine.dtypes import ITEMSIZE

    file = path / "model.safetensors"
    header, data = _header(file)
    out, blobs, pos = {"__metadata__": header.get("__metadata__")}, [], 0
    for name, meta in sorted(
        ((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]
    ):
        begin, end = meta["data_offsets"]
        meta = dict(meta)
        change(name, meta)
        size = math.prod(meta["shape"]) * ITEMSIZE[meta["dtype"]]
        blobs.append(data[begin:end][:size].ljust(size, b"\0"))
        out[name] = dict(meta, data_offsets=[pos, pos + size])
        pos += size
    _write_header(file, json.dumps(out).encode(), b"".join(blobs))


def _first_expert(header):
    return next(k for k in header if "switch_mlp" in k and k.endswith(".weight"))


def _set_first_expert(key, value):
    def mutate(header):
        header[_first_expert(header)][key] = value(header[_first_expert(header)][key])

    return mutate


def _overlap(header):
    scales = sorted(
        (k for k in header if k.endswith("switch_mlp.up_proj.scales")), key=lambda k: header[k]["data_offsets"][0]
    )
    header[scales[1]]["data_offsets"] = list(header[scales[0]]["data_offsets"])


def _duplicate(header):
    name = _first_expert(header)
    body = json.dumps(header).encode()
    return body[:-1] + b"," + json.dumps({name: header[name]})[1:-1].encode() + b"}"


def _scalar_expert(name, meta):
    if "switch_mlp.gate_proj.weight" in name and ".layers.0." in name:
        meta["shape"], meta["dtype"] = [], "U32"


def _f64(name, meta):
    if name == "model.norm.weight":
        meta["dtype"], meta["shape"] = "F64", [meta["shape"][0] // 4]


HEADER_DAMAGE = {
    "array": (lambda h: b"[1, 2]", "not an object"),
    "number": (lambda h: b"12345", "corrupt"),
    "string": (lambda h: b'"a string header"', "not an object"),
    "dtype_list": (_set_first_expert("dtype", lambda v: [v]), "unknown dtype"),
    "offsets_strings": (_set_first_expert("data_offsets", lambda v: [str(x) for x in v]), "data_offsets"),
    "offsets_floats": (_set_first_expert("data_offsets", lambda v: [float(x) for x in v]), "data_offsets"),
    "shape_strings": (_set_first_expert("shape", lambda v: [str(x) for x in v]), "shape"),
    "shape_negative": (_set_first_expert("shape", lambda v: [-v[0], *v[1:]]), "shape"),
    "offsets_reversed": (_set_first_expert("data_offsets", lambda v: v[::-1]), "data_offsets"),
    "overlap": (_overlap, "overlaps"),
    "duplicate_name": (_duplicate, "appears twice"),
    "trailing_garbage": (lambda h: json.dumps(h).encode() + b" trailing", "corrupt header"),
    "nan_offset": (
        lambda h: json.dumps(h).encode().replace(b'"data_offsets": [0,', b'"data_offsets": [NaN,'),
        "corrupt header",
    ),
}


@pytest.mark.parametrize("damage", sorted(HEADER_DAMAGE))
def test_damaged_safetensors_header_is_one_line(model_copy, damage):
    mutate, expected = HEADER_DAMAGE[damage]
    path = model_copy()
    _mutate_header(path, mutate)
    with pytest.raises(OutlierError) as exc:
        load_streamed_model(path)
    text = _one_line(exc)
    assert expected in text and "model.safetensors" in text, text


def test_data_after_the_last_tensor_is_refused(model_copy):
    path = model_copy()
    with open(path / "model.safetensors", "ab") as fh:
        fh.write(b"\0" * 64)
    with pytest.raises(CheckpointError, match="64 bytes after its last tensor"):
        load_streamed_model(path)


@pytest.mark.parametrize("bits,expected", [(None, "expert tensor"), (4, "quantized tensor")])
def test_scalar_expert_tensor_is_refused(model_copy, bits, expected):
    path = model_copy(bits=bits)
    _repack(path, _scalar_expert)
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    text = _one_line(exc)
    assert expected in text and "gate_proj.weight" in text and "[]" in text, text


def test_f64_tensor_is_unsupported_with_what_to_do(model_copy):
    path = model_copy()
    _repack(path, _f64)
    with pytest.raises(UnsupportedModelError) as exc:
        load_streamed_model(path)
    assert "F64" in _one_line(exc) and "mlx_lm.convert" in _one_line(exc)


def test_repacked_but_valid_checkpoint_still_loads(model_copy):
    """The repack helper itself keeps a valid file valid (so the tests above test the damage)."""
    path = model_copy()
    _repack(path, lambda name, meta: None)
    load_streamed_model(path).close()


CONFIG_DAMAGE = [
    (dict(num_attention_heads=0), "num_attention_heads is 0"),
    (dict(num_attention_heads=-4), "num_attention_heads is -4"),
    (dict(num_experts_per_tok=9), "only 8 experts"),
    (dict(num_experts_per_tok=0), "num_experts_per_tok is 0"),
    (dict(num_experts_per_tok=-1), "num_experts_per_tok is -1"),
    (dict(num_experts_per_tok="2"), 'num_experts_per_tok is "2"'),
    (dict(hidden_size=64.5), "hidden_size is 64.5"),
    (dict(rope_theta="big"), 'rope_theta is "big"'),
    (dict(rope_theta=-1.0), "rope_theta is -1.0"),
    (dict(rms_norm_eps=None), "rms_norm_eps is null"),
    (dict(num_key_value_heads=3), "not a multiple"),
    (dict(tie_word_embeddings="no"), "tie_word_embeddings"),
    (dict(rope_scaling=[1, 2]), "rope_scaling"),
    (dict(quantization={"group_size": 32, "bits": 7}), "bits is 7"),
    (dict(quantization={"group_size": "32", "bits": 4}), "group_size is '32'"),
    (dict(quantization=[4]), "quantization must be an object"),
    (dict(model_type=7), "model_type"),
]


@pytest.mark.parametrize("changes,expected", CONFIG_DAMAGE, ids=[str(c) for c, _ in CONFIG_DAMAGE])
def test_bad_config_values_are_one_line_naming_the_key(model_copy, changes, expected):
    path = model_copy()
    _config(path, **changes)
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    text = _one_line(exc)
    assert expected in text and "config.json" in text, text


def test_nan_in_config_is_refused(model_copy):
    path = model_copy()
    (path / "config.json").write_text(
        (path / "config.json").read_text().replace('"rope_theta": 10000.0', '"rope_theta": NaN')
    )
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_streamed_model(path)


def test_qwen3_5_text_config_is_checked(model_copy):
    path = model_copy("qwen3_5_moe")
    config = json.loads((path / "config.json").read_text())
    config["text_config"]["num_experts_per_tok"] = 99
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="text_config.num_experts_per_tok is 99"):
        load_streamed_model(path)


def test_directory_named_like_a_shard(model_copy):
    path = model_copy()
    (path / "model-extra.safetensors").mkdir()
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "model-extra.safetensors" in _one_line(exc) and "directory" in _one_line(exc)


def test_dangling_symlink_shard(model_copy):
    path = model_copy()
    (path / "model-b.safetensors").symlink_to(path / "gone.safetensors")
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "model-b.safetensors" in _one_line(exc) and "does not exist" in _one_line(exc)


@pytest.fixture
def sharded_copy(checkpoint_factory, tmp_path):
    dst = tmp_path / "sharded"
    shutil.copytree(checkpoint_factory("mixtral", shards=2), dst)
    return dst


@pytest.mark.parametrize(
    "index_bytes,expected",
    [
        (b'{"weight_map": ["model-00001-of-00002.safetensors"]}', "no weight_map object"),
        (b'{"weight_map": {"a": 3}}', "weight_map['a'] is 3"),
        (b'{"weight_map": {"a": "../outside.safetensors"}}', "outside the model folder"),
        (b'{"weight_map": {"\xff": "x"}}', "not valid JSON (not UTF-8"),
        (b"[]", "no weight_map object"),
        (b'{"weight_map": {}', "not valid JSON"),
    ],
)
def test_bad_shard_index(sharded_copy, index_bytes, expected):
    (sharded_copy / "model.safetensors.index.json").write_bytes(index_bytes)
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(sharded_copy)
    assert expected in _one_line(exc) and "index.json" in _one_line(exc)


def _deny(monkeypatch, denied):
    """Make opening `denied` fail with EACCES (chmod does not stop root, which runs CI here)."""
    import builtins
    import errno

    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == str(denied):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_unreadable_file_says_permission(model_copy, monkeypatch, name):
    path = model_copy()
    _deny(monkeypatch, path / name)
    with pytest.raises(CheckpointError) as exc:
        CheckpointIndex.open(path)
    assert name in _one_line(exc) and "permission denied" in _one_line(exc)


def test_broken_chat_template(model_copy):
    path = model_copy()
    tok_config = json.loads((path / "tokenizer_config.json").read_text())
    tok_config["chat_template"] = "{% for %}"
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config))
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "chat template" in _one_line(exc) and "tokenizer_config.json" in _one_line(exc)


def test_missing_tokenizer(model_copy):
    path = model_copy()
    (path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError) as exc:
        load_streamed_model(path)
    assert "no tokenizer" in _one_line(exc)

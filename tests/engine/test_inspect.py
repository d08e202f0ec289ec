"""`outlier inspect` reads headers only and predicts what loading will do.

The big case: a header-complete Qwen3.5-397B-A17B 4-bit folder, fabricated as
sparse files (real tensor names, shapes and dtypes from mlx-lm's own
qwen3_5_moe model at full size, built lazily; a few hundred KB on disk), checked
against numbers worked out from the shapes.
"""

import json
import math

import pytest

from engine.inspect_model import format_report, inspect_model
from engine.loader import load_streamed_model
from outlier_tui.cli import main as cli

QWEN35_397B = {
    "model_type": "qwen3_5_moe",
    "text_config": {
        "model_type": "qwen3_5_moe_text",
        "vocab_size": 248320,
        "hidden_size": 4096,
        "num_hidden_layers": 60,
        "num_attention_heads": 32,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "intermediate_size": 12288,
        "linear_num_value_heads": 64,
        "linear_num_key_heads": 16,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_conv_kernel_dim": 4,
        "num_experts": 512,
        "num_experts_per_tok": 10,
        "shared_expert_intermediate_size": 1024,
        "moe_intermediate_size": 1024,
        "full_attention_interval": 4,
        "max_position_embeddings": 262144,
        "rope_parameters": {"rope_theta": 10000000.0, "partial_rotary_factor": 0.25, "rope_type": "default"},
    },
}
# one expert: gate, up [1024 x 4096] and down [4096 x 1024] at 4 bits + bf16 scale and bias per 64
EXPERT_BYTES = 3 * (1024 * 4096 // 2 + 2 * 2 * 1024 * 4096 // 64)
GB = 10**9
_TAGS = {"uint32": "U32", "bfloat16": "BF16", "float32": "F32", "float16": "F16", "uint8": "U8"}


def _write_sparse_checkpoint(folder, config, shard_bytes=5 * GB):
    """mlx-lm's model at full size, never evaluated: its parameter names, shapes and dtypes
    become safetensors headers; the data regions are holes (sparse files)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.utils import quantize_model

    from engine.model_classes import model_classes

    model_class, args_class = model_classes(config)
    model = model_class(args_class.from_dict(config))
    model.update(tree_map(lambda a: a.astype(mx.bfloat16) if a.dtype == mx.float32 else a, model.parameters()))
    model, config = quantize_model(model, config, 64, 4)
    params = [
        (name, tuple(v.shape), _TAGS[str(v.dtype).split(".")[-1]], v.nbytes)
        for name, v in tree_flatten(model.parameters())
    ]
    shards, current, size = [], [], 0
    for p in params:
        if current and size + p[3] > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(p)
        size += p[3]
    shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        header, offset = {"__metadata__": {"format": "mlx"}}, 0
        for name, shape, dtype, nbytes in shard:
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = fname
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / fname, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little") + raw)
            fh.truncate(8 + len(raw) + offset)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config))
    return params


@pytest.fixture(scope="module")
def qwen35_397b(tmp_path_factory):
    folder = tmp_path_factory.mktemp("Qwen3.5-397B-A17B-4bit")
    params = _write_sparse_checkpoint(folder, json.loads(json.dumps(QWEN35_397B)))
    return folder, params


def test_fabricated_folder_is_sparse(qwen35_397b):
    folder, params = qwen35_397b
    files = list(folder.glob("*.safetensors"))
    assert sum(f.stat().st_size for f in files) > 200 * GB
    assert sum(f.stat().st_blocks * 512 for f in files) < 20 * 10**6


def test_qwen35_397b_numbers_follow_from_the_shapes(qwen35_397b):
    folder, params = qwen35_397b
    assert EXPERT_BYTES == 7_077_888
    expert_total = 60 * 512 * EXPERT_BYTES
    backbone = sum(n for name, *_, n in params if ".switch_mlp." not in name)
    # on a Mac (GPU backend) experts and backbone sit in memory as on disk
    r = inspect_model(folder, memory_bytes=64 * GB, float32_compute=False)
    assert (r.model_type, r.num_layers, r.moe_layers, r.num_experts, r.top_k, r.shared_experts) == (
        "qwen3_5_moe",
        60,
        60,
        512,
        10,
        1,
    )
    assert [(s.layers, s.disk_bytes, s.memory_bytes) for s in r.expert_shapes] == [(60, EXPERT_BYTES, EXPERT_BYTES)]
    assert r.expert_shapes[0].quantization == "affine 4-bit, group 64"
    assert r.expert_disk_bytes == r.expert_memory_bytes == expert_total == 217_432_719_360
    assert r.backbone_disk_bytes == r.backbone_memory_bytes == backbone
    assert backbone == 5_579_059_712  # the fabricated non-expert tensors, summed above
    assert r.read_per_token_bytes == 60 * 10 * EXPERT_BYTES
    assert r.min_cache_bytes == 10 * EXPERT_BYTES
    # Worked by hand: memory left after the backbone is 64,000,000,000 - 5,579,059,712 =
    # 58,420,940,288 bytes; a quarter of it, 14,605,235,072, is under a quarter of the experts
    # (54,358,179,840), so it is the budget (the loader agrees: test_prediction_matches_...).
    assert r.default_cache_bytes == 14_605_235_072
    # backbone + budget + the 1 GiB (1,073,741,824) runtime allowance the report names
    assert r.predicted_peak_bytes == 21_258_036_608
    assert r.fits and r.verdict.startswith("runs")

    small = inspect_model(folder, memory_bytes=4 * GB, float32_compute=False)
    assert not small.fits and small.verdict.startswith("does not fit")


def test_cpu_backend_widens_bf16_scales_in_memory(qwen35_397b):
    folder, _ = qwen35_397b
    r = inspect_model(folder, memory_bytes=512 * GB, float32_compute=True)
    # per expert: the bf16 scales and biases (2 x 2 bytes per 64 weights) become float32
    widened = EXPERT_BYTES + 3 * 2 * 2 * 1024 * 4096 // 64
    assert r.expert_shapes[0].memory_bytes == widened
    assert r.expert_memory_bytes == 60 * 512 * widened


def test_cli_prints_the_report_and_json(qwen35_397b, capsys):
    folder, _ = qwen35_397b
    assert cli(["inspect", str(folder), "--memory", "64"]) == 0
    out = capsys.readouterr().out
    assert "60 MoE layers x 512 experts, top-10 + 1 shared" in out
    assert f"{EXPERT_BYTES:,} bytes on disk" in out
    assert "verdict       runs" in out
    assert cli(["inspect", str(folder), "--memory", "4", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["fits"] is False and report["read_per_token_bytes"] == 600 * EXPERT_BYTES


def test_cli_bad_folder_is_one_line(tmp_path, capsys):
    assert cli(["inspect", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err


def test_prediction_matches_what_the_loader_does(checkpoint_factory, tmp_path, monkeypatch):
    """Mixed precision: same pools, expert bytes, minimum, backbone and default budget as a
    real load; the budget with as much free memory as `--memory` names (the backbone and four
    times a budget halfway between the minimum and a quarter of the experts)."""
    from types import SimpleNamespace

    from checkpoints import write_checkpoint

    import engine.loader

    path = write_checkpoint(tmp_path / "mixed", "qwen3_moe_wide", fmt="mixed-8bit-layer0-4bit-rest")
    full = load_streamed_model(path).info
    halfway = (full.min_cache_bytes + full.total_expert_bytes // 4) // 2
    memory = full.resident_bytes + 4 * halfway
    monkeypatch.setattr(
        engine.loader.psutil, "virtual_memory", lambda: SimpleNamespace(available=memory, total=64 << 30)
    )
    loaded = load_streamed_model(path)
    info = loaded.info
    loaded.close()
    r = inspect_model(path, memory_bytes=memory)
    assert sorted(s.memory_bytes for s in r.expert_shapes) == sorted(info.expert_bytes_by_shape)
    assert r.expert_memory_bytes == info.total_expert_bytes
    assert r.min_cache_bytes == info.min_cache_bytes
    assert r.backbone_memory_bytes == info.resident_bytes
    assert r.default_cache_bytes == info.cache_budget_bytes == halfway
    assert math.isclose(r.read_per_token_bytes, sum(info.top_k * s.disk_bytes * s.layers for s in r.expert_shapes))
    assert "\n" not in format_report(r).splitlines()[0]


@pytest.mark.parametrize("arch", ["qwen3_moe", "deepseek_v3", "qwen3_next"])  # GQA, MLA, hybrid
def test_kv_bytes_per_token_is_what_a_cache_grows_by(checkpoint_factory, arch):
    """inspect's KV figure (from the attention projections' widths) against what a real cache
    holds after 8 and 24 tokens, float32 as the CPU computes."""
    import mlx.core as mx
    from checkpoints import resident_oracle
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    from engine.inspect_model import inspect_model

    path = checkpoint_factory(arch)
    model, _ = resident_oracle(path)

    def state_bytes(tokens: int) -> int:
        cache = make_prompt_cache(model)
        model(mx.array([list(range(1, tokens + 1))]), cache=cache)
        kv = [c for c in cache if isinstance(c, KVCache)]  # linear-attention state does not grow
        return sum(a[..., : c.offset, :].nbytes for c in kv for a in (c.keys, c.values))

    grown = (state_bytes(24) - state_bytes(8)) // 16
    report = inspect_model(path, float32_compute=True)
    assert report.kv_bytes_per_1k_tokens == grown * 1000 > 0

"""Benchmark (not a test): the engine at Qwen3.5-397B-A17B's routing scale.

A random checkpoint with the headline model's routing shape (60 MoE layers x 512
experts, top-10, a shared expert, DeltaNet layers with full attention every 4th;
tiny hidden sizes so it fits anywhere) goes through the real code paths: the
loader, `engine.generation.generate` against mlx-lm resident in the same process
(rounds alternating), `outlier generate` as a subprocess, and the chat app driven
headless by Textual's pilot with the real engine. It prints, and writes as JSON:

- load time, and the checkpoint index's Python memory (tracemalloc);
- decode tok/s with a budget holding every expert / mlx-lm resident (median of rounds);
- the engine's host time per MoE layer per decode token, at a 25% budget (warm), with the
  default reader threads and with the engine alone (one reader, reads from the page cache);
- telemetry bytes per SSE frame (engine/wire.py): the key frame and the deltas;
- the heatmap's time per frame in the app (ExpertHeatmap._build, each frame drawn).

    python -m outlier_tui.bench.scale [--dir DIR] [--tokens 48] [--rounds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen35_config(layers: int = 60, experts: int = 512, top_k: int = 10, hidden: int = 64) -> dict:
    """Qwen3.5-397B-A17B's text config with its routing shape kept and every width shrunk."""
    return dict(
        model_type="qwen3_5_moe",
        text_config=dict(
            model_type="qwen3_5_moe_text",
            vocab_size=300,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            intermediate_size=128,
            linear_num_value_heads=4,
            linear_num_key_heads=2,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_conv_kernel_dim=4,
            num_experts=experts,
            num_experts_per_tok=top_k,
            shared_expert_intermediate_size=64,
            moe_intermediate_size=64,
            head_dim=16,
            full_attention_interval=4,
            max_position_embeddings=4096,
            rope_parameters={"rope_theta": 10000000.0, "partial_rotary_factor": 0.25, "rope_type": "default"},
        ),
    )


def build_checkpoint(path: Path, seed: int = 0, **shape: int) -> Path:
    """Random weights (routers widened so routing varies), 4-bit affine g64 as mlx-community
    ships Qwen3.5, saved as mlx_lm.convert saves, with a byte-level tokenizer."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map
    from mlx_lm.utils import quantize_model, save_config

    from engine.model_classes import model_classes

    path.mkdir(parents=True, exist_ok=True)
    config = qwen35_config(**shape)
    model_class, args_class = model_classes(config)
    mx.random.seed(seed)
    model = model_class(args_class.from_dict(config))
    model.update(tree_map(lambda a: a * 4 if a.ndim == 2 else a, model.parameters()))
    model.update(tree_map(lambda a: a.astype(mx.bfloat16) if a.dtype == mx.float32 else a, model.parameters()))
    model, config = quantize_model(model, config, 64, 4)
    mx.save_safetensors(str(path / "model.safetensors"), dict(tree_flatten(model.parameters())), {"format": "mlx"})
    save_config(config, path / "config.json")
    _write_tokenizer(path)
    return path


def _write_tokenizer(path: Path) -> None:
    """One token per byte (no merges) and a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.save(str(path / "tokenizer.json"))
    settings: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>"}
    settings["bos_token"] = None
    settings |= {"pad_token": "<|endoftext|>", "chat_template": CHAT_TEMPLATE, "model_max_length": 4096}
    (path / "tokenizer_config.json").write_text(json.dumps(settings))


def index_memory(path: Path) -> dict[str, float]:
    """Opening the checkpoint index: seconds and the Python heap it keeps."""
    from engine.checkpoint import CheckpointIndex

    start = time.perf_counter()
    CheckpointIndex.open(path)  # also imports and warms what opening needs, outside the trace
    seconds = time.perf_counter() - start
    tracemalloc.start()
    index = CheckpointIndex.open(path)
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert index.moe_layers
    return {"open_s": seconds, "kept_bytes": kept, "peak_bytes": peak}


def _resident(path: Path):
    """mlx-lm's own model, every weight resident, cast as the engine computes (float32 on the CPU)."""
    import mlx.core as mx
    from mlx.utils import tree_reduce
    from mlx_lm.utils import load

    from engine import compute_dtype
    from engine.api import ModelInfo
    from engine.checkpoint import CheckpointIndex
    from engine.loader import LoadedModel
    from outlier_tui.bench.measure import StepTelemetry

    model, tokenizer = load(str(path))[:2]
    compute_dtype.cast_half_floats(model, compute_dtype.resolve("auto"))
    mx.eval(model.parameters())
    index = CheckpointIndex.open(path)
    size = tree_reduce(lambda total, v: total + v.nbytes, model.parameters(), 0)
    info = ModelInfo(str(path), index.model_type, 0, (), 0, 0, 0, 0, size, 0, 0)
    telemetry = StepTelemetry()
    return LoadedModel(model, tokenizer, dict(index.config), info, index, None, None, telemetry), telemetry


def decode_race(path: Path, tokens: int, rounds: int) -> dict[str, Any]:
    """Streamed with every expert cached vs mlx-lm resident, same generate loop, rounds alternating."""
    from engine.loader import LoadOptions, load_streamed_model
    from outlier_tui.bench.measure import StepTelemetry, run_pass

    telemetry = StepTelemetry()
    start = time.perf_counter()
    probe = load_streamed_model(path, None, LoadOptions(prefetch=False))
    default_load_s = time.perf_counter() - start
    total = probe.info.total_expert_bytes
    probe.close()
    start = time.perf_counter()
    streamed = load_streamed_model(path, cache_bytes=total, telemetry=telemetry)
    full_load_s = time.perf_counter() - start
    start = time.perf_counter()
    resident, resident_telemetry = _resident(path)
    resident_load_s = time.perf_counter() - start
    run_pass(streamed, telemetry, 4)  # warm both (compiled probes, allocator)
    run_pass(resident, resident_telemetry, 4)
    per_round = []
    same = True
    r = None
    for _ in range(rounds):
        cpu = time.process_time()
        s = run_pass(streamed, telemetry, tokens)
        s_cpu, cpu = time.process_time() - cpu, time.process_time()
        r = run_pass(resident, resident_telemetry, tokens)
        r_cpu = time.process_time() - cpu
        same = same and s.tokens == r.tokens
        per_round.append(
            {
                "streamed_tps": s.figures["decode_tokens_per_s"],
                "resident_tps": r.figures["decode_tokens_per_s"],
                "ratio": s.figures["decode_tokens_per_s"] / r.figures["decode_tokens_per_s"],
                # process CPU seconds of each whole request (prefill + decode, same tokens): what
                # each side costs, less sensitive than wall time to other processes on the cores
                "streamed_cpu_s": s_cpu,
                "resident_cpu_s": r_cpu,
                "cpu_ratio": r_cpu / s_cpu,
                # the engine's own work per decoded token (the routing's bookkeeping), CPU time
                "streamed_host_ms_per_token": s.figures["host_ms_per_token"],
            }
        )
    info = streamed.info
    streamed.close()
    return {
        "model": {
            "moe_layers": len(info.moe_layers),
            "experts": info.num_experts,
            "top_k": info.top_k,
            "expert_bytes": info.expert_bytes,
            "total_expert_bytes": total,
            "resident_bytes": info.resident_bytes,
        },
        "load_s_default_budget": default_load_s,
        "load_s_every_expert": full_load_s,
        "load_s_mlx_lm_resident": resident_load_s,
        "tokens_equal_mlx_lm": same,
        "rounds": per_round,
        "ratio_median": statistics.median(x["ratio"] for x in per_round),
        "cpu_ratio_median": statistics.median(x["cpu_ratio"] for x in per_round),
        "streamed_host_ms_per_token_median": statistics.median(x["streamed_host_ms_per_token"] for x in per_round),
        "resident_tokens": r.tokens if r is not None else [],
    }


def host_and_telemetry(path: Path, tokens: int, alone: bool = False) -> tuple[dict[str, Any], list]:
    """At a 25% budget (misses, the full per-layer host path), warm pass: host time per MoE
    layer per decode token; the snapshots after every step, for the wire and the heatmap.
    alone: one reader thread and reads through the page cache (memory copies), so the
    engine thread shares the cores with as little reading as can be: at 7.7 KB per expert
    each reader thread's GIL hand-offs take CPU from the engine thread (the default is one
    thread per core up to 4)."""
    from engine.api import EngineState
    from engine.loader import LoadOptions, load_streamed_model
    from outlier_tui.bench.measure import StepTelemetry, run_pass

    snapshots: list = []

    class Recording(StepTelemetry):
        def begin_step(self) -> int:
            step = super().begin_step()
            snapshots.append((time.perf_counter(), self.snapshot()))
            return step

    telemetry = Recording()
    probe = load_streamed_model(path, None, LoadOptions(prefetch=False))
    budget = probe.info.total_expert_bytes // 4
    probe.close()
    # prefetch off: its load-time decision is timed, so the measured path would vary by run
    options = LoadOptions(prefetch=False, reader_threads=1, page_cache=True) if alone else LoadOptions(prefetch=False)
    loaded = load_streamed_model(path, budget, options, telemetry=telemetry)
    try:
        layers = len(loaded.info.moe_layers)
        run_pass(loaded, telemetry, tokens)  # cold
        passes = [run_pass(loaded, telemetry, tokens).figures for _ in range(2)]
    finally:
        loaded.close()
    host_ms = statistics.median(p["host_ms_per_token"] for p in passes)
    fold_ms = statistics.median(p["telemetry_fold_ms_per_token"] for p in passes)
    telemetry.set_state(EngineState.IDLE)
    return {
        "budget_bytes": budget,
        "host_ms_per_token": host_ms,
        "host_ms_per_layer_per_token": host_ms / layers,
        # paid outside the layers by whoever reads the telemetry (here every step; the app's
        # poller at <= 10 Hz): the bulk fold of what the layers queued
        "telemetry_fold_ms_per_layer_per_token": fold_ms / layers,
        "decode_tps": statistics.median(p["decode_tokens_per_s"] for p in passes),
        "decode_hit_rate": statistics.median(p["decode_hit_rate"] for p in passes),
        "time_to_first_token_s": statistics.median(p["time_to_first_token_s"] for p in passes),
    }, snapshots


def frame_bytes(frame: dict) -> int:
    """An SSE event's size: its JSON as the server writes it (no spaces)."""
    return len(json.dumps(frame, separators=(",", ":")))


def wire_sizes(snapshots: list) -> dict[str, Any]:
    """Bytes per SSE frame: the key frame, deltas of every step, and deltas at the server's 10 Hz."""
    import dataclasses

    from engine.wire import TelemetryEncoder

    last = snapshots[-1][1]
    lists = {f.name: getattr(last, f.name) for f in dataclasses.fields(last)}
    as_lists = sum(len(json.dumps(v.tolist())) for v in lists.values() if hasattr(v, "tolist"))
    encoder = TelemetryEncoder()
    every = [frame_bytes(encoder.encode(s)) for _, s in snapshots]
    encoder, paced, sent_at = TelemetryEncoder(), [], -1.0
    for t, s in snapshots:
        if t - sent_at >= 0.1:
            paced.append(frame_bytes(encoder.encode(s)))
            sent_at = t
    start = time.perf_counter()
    for _, s in snapshots[-20:]:
        TelemetryEncoder().encode(s)
    encode_ms = (time.perf_counter() - start) * 1000 / min(20, len(snapshots))
    return {
        "arrays_as_json_lists_bytes": as_lists,
        "key_frame_bytes_last": frame_bytes(TelemetryEncoder().encode(last)),
        "key_frame_ms": encode_ms,
        "delta_bytes_per_step_median": statistics.median(every[1:]),
        "delta_bytes_per_step_max": max(every[1:]),
        "delta_bytes_10hz_median": statistics.median(paced[1:]) if len(paced) > 1 else None,
        "delta_bytes_10hz_max": max(paced[1:]) if len(paced) > 1 else None,
        "frames": len(every),
    }


def through_generate(path: Path, tokens: int, want: list[int]) -> dict[str, Any]:
    """`outlier generate` on the checkpoint (default budget and settings), the benchmark's
    prompt through the chat template; its tokens against mlx-lm resident's (`want`)."""
    from outlier_tui.bench import workload

    prompt = workload.messages()[0]["content"]
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "stats.json"
        argv = [sys.executable, "-m", "outlier_tui.cli", "generate", "--model", str(path), "--prompt", prompt]
        argv += ["--max-tokens", str(tokens), "--stats-json", str(stats_path)]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        stats = json.loads(stats_path.read_text())
    return {
        "wall_s": wall,
        "tokens": len(stats["tokens"]),
        "tokens_equal_mlx_lm": stats["tokens"] == want[: len(stats["tokens"])] and len(stats["tokens"]) > 0,
        "decode_tps": stats["generation_tps"],
        "cache_budget_bytes": stats["cache_budget_bytes"],
    }


async def _app_frames(path: Path, size: tuple[int, int], tokens: int) -> dict[str, Any]:
    from engine import Engine
    from engine.api import GenerationParams
    from outlier_tui.app.heatmap import ExpertHeatmap
    from outlier_tui.app.main import OutlierApp
    from outlier_tui.app.prompt_input import PromptInput
    from outlier_tui.app.themes import bundled_theme_dir
    from outlier_tui.store import ConversationStore

    frames: list[float] = []
    cpu: list[float] = []  # the UI thread's own CPU time per frame (wall time also holds GIL waits)
    original = ExpertHeatmap._build

    def timed(self, width: int, height: int):
        start, start_cpu = time.perf_counter(), time.thread_time()
        lines = original(self, width, height)
        frames.append((time.perf_counter() - start) * 1000)
        cpu.append((time.thread_time() - start_cpu) * 1000)
        return lines

    ExpertHeatmap._build = timed  # type: ignore[method-assign]
    engine = Engine()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = ConversationStore(Path(tmp) / "bench.sqlite3")
            app = OutlierApp(
                engine,
                store,
                model_dir=str(path),
                params=GenerationParams(max_tokens=tokens),
                theme_dirs=[bundled_theme_dir()],
                keymap_file=Path(tmp) / "none",
            )
            async with app.run_test(size=size) as pilot:
                deadline = time.monotonic() + 600
                while engine.snapshot().model is None and time.monotonic() < deadline:
                    await pilot.pause(0.2)
                await pilot.pause(0.5)
                frames.clear()  # the frames of the answer only
                cpu.clear()
                prompt = app.query_one(PromptInput)
                prompt.insert("Write a Python function that reverses a string.")
                prompt.action_submit()
                await pilot.pause(0.5)
                while app.generating and time.monotonic() < deadline:
                    await pilot.pause(0.1)
                await pilot.pause(0.5)
                heatmap = app.query_one(ExpertHeatmap)
                shown = heatmap.snapshot
                cells = shown.hits.size if shown is not None else 0
            store.close()
    finally:
        ExpertHeatmap._build = original  # type: ignore[method-assign]
        engine.close()
    return {
        "terminal": f"{size[0]}x{size[1]}",
        "cells": cells,
        "frames": len(frames),
        "ms_per_frame_median": statistics.median(frames) if frames else None,
        "ms_per_frame_max": max(frames) if frames else None,
        "ms_per_frame_p90": sorted(frames)[int(0.9 * (len(frames) - 1))] if frames else None,
        "cpu_ms_per_frame_median": statistics.median(cpu) if cpu else None,
        "cpu_ms_per_frame_max": max(cpu) if cpu else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="checkpoint folder (built if missing; default: a temp dir)")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="160x50", help="terminal size for the app run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="outlier-scale-") as tmp:
        path = args.dir or Path(tmp) / "qwen35-shape"
        result: dict[str, Any] = {"command": "python -m outlier_tui.bench.scale " + " ".join(argv or sys.argv[1:])}
        if not (path / "config.json").exists():
            start = time.perf_counter()
            build_checkpoint(path)
            result["build_s"] = time.perf_counter() - start
        result["index"] = index_memory(path)
        result["decode"] = decode_race(path, args.tokens, args.rounds)
        host, snapshots = host_and_telemetry(path, args.tokens)
        result["host"] = host
        result["host_engine_alone"] = host_and_telemetry(path, args.tokens, alone=True)[0]
        result["wire"] = wire_sizes(snapshots)
        result["generate"] = through_generate(path, args.tokens, result["decode"].pop("resident_tokens"))
        columns, lines = (int(v) for v in args.size.split("x"))
        result["app"] = asyncio.run(_app_frames(path, (columns, lines), args.tokens))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

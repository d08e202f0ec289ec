"""Load an MLX checkpoint with its routed experts streamed from the SSD.

mlx-lm builds the model lazily (no tensor is read); every SwitchGLU is then
swapped for a StreamedSwitchGLU before anything evaluates, so the stacked
expert tensors are never read whole. The rest is made resident, cast to the
compute dtype (float32 on the CPU backend, whose half-precision kernels are
10-40x slower).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
import psutil
from mlx.utils import tree_flatten, tree_map

from engine.api import ModelInfo
from engine.cache_policy import EvictionPolicy, make_policy
from engine.checkpoint import CheckpointIndex, MoELayerFiles
from engine.errors import BudgetError, CheckpointError, UnsupportedModelError
from engine.expert_cache import ExpertCache
from engine.reader import ExpertReader
from engine.reasoning import reasoning_fields
from engine.slot_pool import SlotPool, TensorSpec
from engine.streamed_moe import ExpertStreamer, Projection, StreamedSwitchGLU
from engine.telemetry import Telemetry

_LAYER = re.compile(r"\blayers\.(\d+)\.")
_HALF = (mx.float16, mx.bfloat16)
_MX_DTYPES = {"F32": mx.float32, "F16": mx.float16, "BF16": mx.bfloat16, "U32": mx.uint32,
              "U8": mx.uint8, "I32": mx.int32}
MB = 1024 * 1024


@dataclass
class LoadedModel:
    """A model ready to run on the thread that loaded it."""

    model: nn.Module
    tokenizer: object  # mlx_lm TokenizerWrapper
    config: dict
    info: ModelInfo
    index: CheckpointIndex
    streamer: ExpertStreamer | None
    reader: ExpertReader | None
    telemetry: Telemetry

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def default_compute_dtype() -> mx.Dtype | None:
    """float32 on the CPU backend; None (keep the checkpoint's dtypes) on GPUs."""
    return mx.float32 if mx.default_device() == mx.cpu else None


def auto_cache_bytes(total_expert_bytes: int, resident_bytes: int) -> int:
    """A quarter of what RAM has left after the backbone, and at most a quarter of all
    experts: a larger private cache starves the OS page cache (see DESIGN.md)."""
    available = psutil.virtual_memory().available - resident_bytes
    return max(0, min(available // 4, total_expert_bytes // 4))


def load_streamed_model(
    path: str | Path,
    cache_bytes: int | None = None,
    *,
    compute_dtype: mx.Dtype | None | str = "auto",
    reader_threads: int = 4,
    policy: str | EvictionPolicy = "lru",
    prefetch: bool = False,
    record_trace: bool = False,
    telemetry: Telemetry | None = None,
    on_progress: Callable[[float, str], None] | None = None,
) -> LoadedModel:
    progress = on_progress or (lambda fraction, message: None)
    telemetry = telemetry or Telemetry()
    if compute_dtype == "auto":
        compute_dtype = default_compute_dtype()

    progress(0.05, "reading checkpoint index")
    index = CheckpointIndex.open(path)
    progress(0.15, "building the model lazily")
    model, config = _build_lazy(index)
    tokenizer = _load_tokenizer(index.path, config)

    switches = _find_switches(model)
    rows = _match_layers(switches, index)
    if compute_dtype is not None:
        _cast_floats(model, compute_dtype)

    streamer = reader = None
    moe_layers = tuple(layer for layer, _, _ in rows)
    slot_bytes = total_expert_bytes = num_experts = top_k = slots = budget = 0
    if rows:
        num_experts = rows[0][2].num_experts
        top_k = _top_k(config)
        specs = _pool_specs(rows, compute_dtype)
        slot_bytes = SlotPool.slot_nbytes(specs)
        total_expert_bytes = slot_bytes * num_experts * len(rows)

    telemetry.reset_layout(moe_layers, num_experts)
    # Resident part: everything the model still holds once the experts are swapped out.
    for _, (parent, attr, _switch), _ in rows:
        setattr(parent, attr, _Placeholder())
    resident_bytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    progress(0.25, f"loading {resident_bytes / MB:.0f} MB of resident weights")
    try:
        mx.eval(model.parameters())
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"Reading resident weights failed ({exc}); the checkpoint may be corrupt.") from None

    if rows:
        minimum = top_k * slot_bytes
        if cache_bytes is None:
            budget = min(max(auto_cache_bytes(total_expert_bytes, resident_bytes), minimum),
                         total_expert_bytes)
        else:
            budget = cache_bytes
        if budget < minimum:
            raise BudgetError(
                f"A cache of {budget / MB:.1f} MB cannot hold one layer's {top_k} experts; "
                f"use at least {math.ceil(minimum / MB)} MB (--cache-mb {math.ceil(minimum / MB)})."
            )
        slots = min(budget // slot_bytes, num_experts * len(rows))
        progress(0.7, f"allocating {slots} expert slots ({slots * slot_bytes / MB:.0f} MB)")
        pool = SlotPool(specs, slots)
        cache = ExpertCache(slots, make_policy(policy) if isinstance(policy, str) else policy,
                            record_trace=record_trace)
        reader = ExpertReader(sorted(index.file_sizes), threads=reader_threads)
        try:
            streamer = ExpertStreamer([files for _, _, files in rows], pool, cache, reader, telemetry,
                                      prefetch=prefetch)
            for row, (_, (parent, attr, switch), _) in enumerate(rows):
                predict, next_row = None, None
                if row + 1 < len(rows):
                    predict, next_row = _router_predictor(rows[row + 1][1][0], top_k), row + 1
                setattr(parent, attr, StreamedSwitchGLU(
                    row, streamer, _projections(switch), switch.activation, predict, next_row))
            if slots == num_experts * len(rows):
                progress(0.8, f"the budget holds every expert: reading all {slots} of them")
                streamer.preload_all(num_experts)
        except BaseException:
            reader.close()  # its threads and file descriptors belong to no one else
            raise

    info = ModelInfo(
        path=str(index.path), model_type=index.model_type,
        num_layers=_num_layers(config), moe_layers=moe_layers, num_experts=num_experts,
        top_k=top_k, expert_bytes=slot_bytes, total_expert_bytes=total_expert_bytes,
        resident_bytes=resident_bytes, cache_budget_bytes=budget, cache_slots=slots,
        **reasoning_fields(tokenizer),
    )
    telemetry.set_model(info, slot_bytes, reader.stats if reader else None)
    progress(1.0, "ready")
    return LoadedModel(model, tokenizer, config, info, index, streamer, reader, telemetry)


class _Placeholder(nn.Module):
    """Stands in for a SwitchGLU while resident weights are evaluated."""


def _build_lazy(index: CheckpointIndex) -> tuple[nn.Module, dict]:
    from mlx_lm.utils import _get_classes, load_model

    try:
        _get_classes(dict(index.config))
    except ValueError:
        raise UnsupportedModelError(
            f"Architecture '{index.model_type}' is not supported by mlx-lm "
            f"{_mlx_lm_version()}; use an mlx-community MoE checkpoint (mixtral, qwen3_moe, "
            "qwen3_next, qwen3_5_moe, deepseek_v3, olmoe, ...)."
        ) from None
    quant = index.config.get("quantization") or {}
    if quant.get("mode", "affine") != "affine" or "quantization_config" in index.config and not quant:
        mode = quant.get("mode") or index.config.get("quantization_config", {}).get("quant_method")
        raise UnsupportedModelError(
            f"Weights quantized as '{mode}' are not supported yet; Outlier streams affine "
            "4/8-bit or unquantized experts (mlx_lm.convert -q makes those)."
        )
    try:
        return load_model(index.path, lazy=True, strict=True)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"The weights do not match config.json: {first}") from None
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"config.json is missing or has a bad field ({exc}).") from None


def _mlx_lm_version() -> str:
    from importlib.metadata import version

    return version("mlx-lm")


def _load_tokenizer(path: Path, config: dict):
    from mlx_lm.utils import load_tokenizer

    try:
        return load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
    except Exception as exc:  # tokenizers raise many unrelated types
        raise CheckpointError(
            f"Could not load the tokenizer from {path} ({type(exc).__name__}: {exc}); the folder "
            "needs tokenizer.json / tokenizer_config.json."
        ) from None


def _find_switches(model: nn.Module) -> list[tuple[str, tuple[nn.Module, str, nn.Module]]]:
    from mlx_lm.models.switch_layers import SwitchGLU, SwitchMLP

    found = []
    for name, module in model.named_modules():
        for attr, child in module.children().items():
            if isinstance(child, SwitchMLP):
                raise UnsupportedModelError(
                    f"{name}.{attr} uses SwitchMLP experts, which Outlier cannot stream yet."
                )
            if isinstance(child, SwitchGLU):
                for proj in (child.gate_proj, child.up_proj, child.down_proj):
                    mode = getattr(proj, "mode", "affine")
                    if mode != "affine":
                        raise UnsupportedModelError(
                            f"Experts quantized as {mode} are not supported yet (affine 4/8-bit "
                            "or unquantized only)."
                        )
                found.append((f"{name}.{attr}" if name else attr, (module, attr, child)))
    return found


def _match_layers(switches, index: CheckpointIndex) -> list[tuple[int, tuple, MoELayerFiles]]:
    rows = []
    for name, triple in switches:
        m = _LAYER.search(name)
        if not m or int(m.group(1)) not in index.moe_layers:
            raise CheckpointError(f"No stacked expert tensors on disk for {name}.")
        rows.append((int(m.group(1)), triple, index.moe_layers[int(m.group(1))]))
    rows.sort(key=lambda r: r[0])
    return rows


def _cast_floats(model: nn.Module, dtype: mx.Dtype) -> None:
    model.update(tree_map(lambda a: a.astype(dtype) if a.dtype in _HALF else a, model.parameters()))


def _pool_specs(rows, compute_dtype) -> dict[str, TensorSpec]:
    reference = rows[0][2]
    specs = {}
    for name, tensor in reference.tensors.items():
        dtype = _MX_DTYPES.get(tensor.location.dtype)
        if dtype is None:
            raise UnsupportedModelError(f"Expert tensor dtype {tensor.location.dtype} is not supported.")
        if compute_dtype is not None and dtype in (*_HALF, mx.float32):
            dtype = compute_dtype
        specs[name] = TensorSpec(tensor.expert_shape, dtype)
    for layer, _, files in rows[1:]:
        shapes = {n: t.expert_shape for n, t in files.tensors.items()}
        if shapes != {n: s.shape for n, s in specs.items()}:
            raise UnsupportedModelError(
                f"MoE layer {layer} has expert shapes different from layer {rows[0][0]}; "
                "mixed expert shapes are not supported yet."
            )
    return specs


def _projections(switch: nn.Module) -> dict[str, Projection]:
    out = {}
    for name in ("gate_proj", "up_proj", "down_proj"):
        proj = getattr(switch, name)
        quantized = "scales" in proj
        out[name] = Projection(
            name, quantized, getattr(proj, "group_size", 0), getattr(proj, "bits", 0),
            getattr(proj, "mode", "affine"), "bias" in proj,
        )
    return out


def _router_predictor(block: nn.Module, top_k: int) -> Callable[[mx.array], mx.array]:
    """The next MoE block's router applied to this layer's input (a guess, for prefetch)."""

    def predict(x: mx.array) -> mx.array:
        out = block.gate(x)
        if isinstance(out, tuple):  # deepseek-style gates return (indices, scores)
            return out[0]
        return mx.argpartition(-out, kth=top_k - 1, axis=-1)[..., :top_k]

    return predict


def _top_k(config: dict) -> int:
    cfg = config.get("text_config", config)
    for key in ("num_experts_per_tok", "num_experts_per_token", "moe_top_k", "top_k"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    raise UnsupportedModelError("config.json does not say how many experts each token uses.")


def _num_layers(config: dict) -> int:
    cfg = config.get("text_config", config)
    return int(cfg.get("num_hidden_layers", cfg.get("n_layers", 0)))


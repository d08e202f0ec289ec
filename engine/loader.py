"""Load an MLX checkpoint with its routed experts streamed from the SSD.

mlx-lm builds the model lazily (no tensor is read); every SwitchGLU or
SwitchMLP is then swapped for a StreamedExperts before anything evaluates, so
expert tensors are never read whole. Experts of different shapes (mixed
precision) get one slot pool each, sharing one budget (engine/pool_plan.py). The rest is made resident, cast to the
compute dtype (float32 on the CPU backend, whose half-precision kernels are
10-40x slower).
"""

from __future__ import annotations

import copy
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn
import psutil
from mlx.utils import tree_flatten, tree_reduce
from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache
from mlx_lm.tokenizer_utils import TokenizerWrapper

from engine import compute_dtype as compute_dtypes
from engine import metal_memory, pool_plan
from engine import page_cache as page_cache_choice
from engine.api import LoadProgress, ModelInfo, ProgressFn
from engine.cache_policy import DEFAULT_POLICY, EvictionPolicy, LRUPolicy, RouterScorePolicy, make_policy
from engine.checkpoint import CheckpointIndex, MoELayerFiles, expected_num_experts, experts_per_token
from engine.checkpoint_rules import check_chat_template, check_tokenizer_files
from engine.context import context_limit
from engine.dtypes import TensorSpec, tag_of_mx
from engine.errors import BudgetError, CheckpointError, UnsupportedModelError
from engine.expert_cache import ExpertCache
from engine.expert_streamer import ExpertStreamer, PoolGroup, PrefetchMode
from engine.memory_guard import MemoryGuard
from engine.model_classes import model_classes
from engine.pool_plan import ShapeGroup, auto_cache_bytes, default_cache_budget  # noqa: F401 (re-exported)
from engine.prefill import CHUNK_BY_CHUNK_ONLY, FALLBACK_NOTICE
from engine.reader import ExpertReader
from engine.reasoning import reasoning_fields
from engine.resident_block import compile_when_resident
from engine.router_guess import RouterGuess
from engine.slot_pool import SlotPool
from engine.streamed_experts import Projection, StreamedExperts
from engine.telemetry import Telemetry
from engine.tool_parsers import tool_fields

_LAYER = re.compile(r"(?:^|\.)(\d+)\.")  # the first numeric path component: the decoder layer
MB = 1024 * 1024


class Switch(NamedTuple):
    """A routed-expert module (SwitchGLU or SwitchMLP) and where it hangs in the model."""

    parent: nn.Module
    attr: str
    module: nn.Module


class MoERow(NamedTuple):
    """A streamed MoE layer: its decoder layer, its expert module, its tensors on disk."""

    layer: int
    switch: Switch
    files: MoELayerFiles


@dataclass
class LoadedModel:
    """A model ready to run on the thread that loaded it."""

    model: nn.Module
    tokenizer: TokenizerWrapper
    config: dict
    info: ModelInfo
    index: CheckpointIndex
    streamer: ExpertStreamer | None
    reader: ExpertReader | None
    telemetry: Telemetry
    wired: metal_memory.WiredLimit | None = None  # Metal: the wired limit held while loaded
    hidden_size: int = 0  # width of the hidden state at the MoE layers (0: no streamed layer)
    trimmable_cache: bool = True  # False: hybrid (linear-attention state), restored from snapshots
    memory_guard: MemoryGuard | None = None  # shrinks the expert cache when free memory runs low

    def expert_disk_bytes(self, experts: Iterable[tuple[int, int]]) -> int:
        """Bytes on disk of these (row, expert) pairs."""
        if self.streamer is None:
            return 0
        layers = self.streamer.layers
        per_row = Counter(row for row, _ in experts)  # a long prompt routes to thousands
        return sum(layers[row].disk_bytes_per_expert * count for row, count in per_row.items())

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if self.wired is not None:
            self.wired.close()


def default_compute_dtype() -> mx.Dtype | None:
    """float32 on the CPU backend; None (keep the checkpoint's dtypes) on GPUs."""
    return compute_dtypes.resolve("auto")


@dataclass(frozen=True)
class LoadOptions:
    """How a model's experts are computed, read, kept and prefetched: every front end's flags
    end up here (engine.Engine holds one)."""

    compute_dtype: mx.Dtype | None | str = "auto"  # "auto": float32 on the CPU, the checkpoint's on GPUs
    reader_threads: int | None = None  # None: engine.reader.default_reader_threads()
    uncached_reads: bool = False  # force reads past the page cache (else page_cache decides)
    page_cache: bool | None = None  # None: measured at load (engine.page_cache)
    policy: str | EvictionPolicy = DEFAULT_POLICY
    prefetch: bool | PrefetchMode | None = None  # None: decided at load from a measurement
    prompt_favourites: bool = True  # keep a prompt's most used experts hot for decoding
    record_trace: bool = False  # the caches record every access (bench: Belady replays)
    memory_floor_bytes: int | None = None  # free memory below this shrinks the cache (None: engine.memory_guard's)


class _ExpertPlan(NamedTuple):
    """The streamed layers' experts, grouped by shape into slot pools (nothing allocated yet)."""

    rows: list[MoERow]
    specs: list[dict[str, TensorSpec]]  # per group: its slot's tensors
    groups: list[ShapeGroup]
    top_k: int
    num_experts: int
    total_bytes: int
    minimum_bytes: int  # one layer's top-k experts in every pool


def load_streamed_model(
    path: str | Path,
    cache_bytes: int | None = None,
    options: LoadOptions = LoadOptions(),
    *,
    telemetry: Telemetry | None = None,
    on_progress: ProgressFn | None = None,
) -> LoadedModel:
    """The checkpoint at `path`, its backbone resident and its experts streamed through a
    cache of `cache_bytes` (None: sized from free memory). Stages: read and check the
    checkpoint, build the model lazily, find the layers that stream, load the rest, then
    size the pools and swap each expert layer for a StreamedExperts."""

    def progress(fraction: float, message: str) -> None:
        if on_progress is not None:
            on_progress(LoadProgress(fraction, message))

    telemetry = telemetry or Telemetry()
    compute_dtype = compute_dtypes.resolve(options.compute_dtype)  # "auto", "float16", ... -> a dtype or None

    progress(0.05, "reading checkpoint index")
    index = CheckpointIndex.open(path)
    progress(0.15, "building the model lazily")
    model, config = _build_lazy(index)
    check_tokenizer_files(index.path)
    tokenizer = _load_tokenizer(index.path, config)
    check_chat_template(index.path, tokenizer)

    rows, notice = _streamed_rows(model, index)
    if notice:
        progress(0.2, notice)
    compute_dtypes.cast_half_floats(model, compute_dtype)
    plan = _plan_experts(rows, config, compute_dtype)
    telemetry.reset_layout(tuple(row.layer for row in rows), plan.num_experts)
    resident_bytes = _load_resident(model, rows, progress)

    device = metal_memory.device_memory()
    streamer = reader = cache_reads = None
    slots_per_group = [0] * len(plan.groups)
    budget = 0
    if rows:
        budget = _budget(plan, cache_bytes, resident_bytes, device)
        slots_per_group = pool_plan.split_budget(plan.groups, budget, plan.top_k)
        held = sum(n * g.slot_bytes for n, g in zip(slots_per_group, plan.groups))
        progress(0.7, f"allocating {sum(slots_per_group)} expert slots ({held / MB:.0f} MB)")
        routers = _router_guesses(model, plan)
        pool_groups = _pool_groups(plan, slots_per_group, options, router_scores=None not in routers)
        cache_reads = page_cache_choice.decide([row.files for row in rows], options.page_cache)
        progress(0.75, cache_reads.describe())
        uncached = options.uncached_reads or not cache_reads.on
        reader = ExpertReader(sorted(index.file_sizes), threads=options.reader_threads, uncached=uncached)
        try:
            streamer = ExpertStreamer(
                [row.files for row in rows],
                pool_groups,
                reader,
                telemetry,
                prefetch=PrefetchMode.of(options.prefetch),
                prompt_favourites=options.prompt_favourites,
            )
            _swap_in_streamed_experts(model, rows, streamer, routers)
            if all(n == g.capacity for n, g in zip(slots_per_group, plan.groups)):
                progress(0.8, f"the budget holds every expert: reading all {sum(slots_per_group)} of them")
                streamer.preload_all()
            elif options.prefetch is None and (predictors := [r for r in routers[1:] if r is not None]):
                streamer.decide_prefetch(predictors[0], predictors[0].input_size)  # auto: measured
        except BaseException:
            reader.close()  # its threads and file descriptors belong to no one else
            raise

    wired = metal_memory.WiredLimit(resident_bytes + budget, device)
    if wired.notice:
        progress(0.9, wired.notice)
        notice = f"{notice} {wired.notice}".strip()
    info = ModelInfo(
        path=str(index.path),
        model_type=index.model_type,
        num_layers=_num_layers(config),
        moe_layers=tuple(row.layer for row in rows),
        num_experts=plan.num_experts,
        top_k=plan.top_k,
        expert_bytes=max((g.slot_bytes for g in plan.groups), default=0),
        total_expert_bytes=plan.total_bytes,
        resident_bytes=resident_bytes,
        cache_budget_bytes=budget,
        cache_slots=sum(slots_per_group),
        min_cache_bytes=plan.minimum_bytes,
        expert_bytes_by_shape=tuple(g.slot_bytes for g in plan.groups),
        notice=notice,
        context_length=context_limit(config, tokenizer),
        compute_dtype=compute_dtypes.name_of(compute_dtype) if compute_dtype else compute_dtypes.dominant_float(model),
        page_cache=cache_reads.describe() if cache_reads is not None else "",
        **reasoning_fields(tokenizer),
        **tool_fields(tokenizer),
    )
    telemetry.set_model(info, reader.stats if reader else None)
    progress(1.0, "ready")
    return LoadedModel(
        model,
        tokenizer,
        config,
        info,
        index,
        streamer,
        reader,
        telemetry,
        wired,
        hidden_size=_input_size(rows[0].switch[2]) if rows else 0,
        trimmable_cache=can_trim_prompt_cache(make_prompt_cache(model)),
        memory_guard=MemoryGuard(streamer, plan.top_k, telemetry, options.memory_floor_bytes) if streamer else None,
    )


def _streamed_rows(model: nn.Module, index: CheckpointIndex) -> tuple[list[MoERow], str]:
    """The expert layers that stream, and a notice for the user when some or all cannot."""
    switches = _find_switches(model)
    rows, kept = _match_layers(switches, index)
    notice = _resident_notice(kept, len(switches))
    if not switches and (index.unstacked_experts or expected_num_experts(index.config)):
        notice = (
            "This model's experts are not in a SwitchGLU/SwitchMLP layer, so they cannot "
            "stream: the whole model loads fully resident."
        )
    if rows and index.model_type in CHUNK_BY_CHUNK_ONLY:
        notice = " ".join(n for n in (notice, FALLBACK_NOTICE) if n)
    return rows, notice


def _plan_experts(rows: list[MoERow], config: dict, compute_dtype: mx.Dtype | None) -> _ExpertPlan:
    top_k = experts_per_token(config) if rows else 0
    specs, groups = _shape_groups(rows, compute_dtype)
    return _ExpertPlan(
        rows,
        specs,
        groups,
        top_k,
        max((row.files.num_experts for row in rows), default=0),
        pool_plan.total_bytes(groups),
        pool_plan.minimum_budget(groups, top_k),
    )


def _load_resident(model: nn.Module, rows: list[MoERow], progress: Callable[[float, str], None]) -> int:
    """Read everything the model holds once its expert layers are swapped out; its bytes."""
    for _, (parent, attr, _switch), _ in rows:
        setattr(parent, attr, _Placeholder())
    resident_bytes = tree_reduce(lambda total, v: total + v.nbytes, model.parameters(), 0)
    progress(0.25, f"loading {resident_bytes / MB:.0f} MB of resident weights")
    try:
        mx.eval(model.parameters())
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"Reading resident weights failed ({exc}); the checkpoint may be corrupt.") from None
    return resident_bytes


def _budget(plan: _ExpertPlan, cache_bytes: int | None, resident_bytes: int, device) -> int:
    """The expert cache's bytes: as asked, or from free memory; never under one layer's top-k."""
    if cache_bytes is None:
        free = metal_memory.budget_memory(device, psutil.virtual_memory().available)
        budget = default_cache_budget(plan.total_bytes, plan.minimum_bytes, resident_bytes, free)
    else:
        budget = cache_bytes
    if budget < plan.minimum_bytes:
        need = math.ceil(plan.minimum_bytes / MB)
        raise BudgetError(
            f"A cache of {budget / MB:.1f} MB cannot hold one layer's {plan.top_k} experts; "
            f"use at least {need} MB (--cache-mb {need})."
        )
    return budget


def _router_guesses(model: nn.Module, plan: _ExpertPlan) -> list[RouterGuess | None]:
    """Per streamed layer, its router run on a hidden state (None where it cannot be found):
    the next layer's guess for prefetch, and the router scores a RouterScorePolicy reads."""
    scopes_of = _scope_finder(model)
    return [
        RouterGuess.find(scopes_of(parent), files.num_experts, _input_size(switch), plan.top_k)
        for _, (parent, _, switch), files in plan.rows
    ]


def _pool_groups(
    plan: _ExpertPlan, slots_per_group: list[int], options: LoadOptions, router_scores: bool
) -> list[PoolGroup]:
    """One slot pool and cache per shape group, each with its own policy object; a policy that
    reads router scores becomes LRU where some layer's router cannot be found."""
    out = []
    for i, (specs, group, slots) in enumerate(zip(plan.specs, plan.groups, slots_per_group)):
        policy = options.policy
        own = make_policy(policy) if isinstance(policy, str) else (policy if i == 0 else copy.deepcopy(policy))
        if isinstance(own, RouterScorePolicy) and not router_scores:
            own = LRUPolicy()
        cache = ExpertCache(slots, own, record_trace=options.record_trace)
        out.append(PoolGroup(SlotPool(specs, slots), cache, group.rows))
    return out


def _swap_in_streamed_experts(
    model: nn.Module, rows: list[MoERow], streamer: ExpertStreamer, routers: list[RouterGuess | None]
) -> None:
    """Each expert layer becomes a StreamedExperts over the streamer's pools, with the next
    layer's router as its prefetch guess; the MoE block around it gets a compiled decode step
    for when every expert is resident (engine.resident_block)."""
    block_of = _block_finder(model)
    for row, (_, (parent, attr, switch), _) in enumerate(rows):
        predict = routers[row + 1] if row + 1 < len(rows) else None
        own = routers[row]
        streamed = StreamedExperts(
            row,
            streamer,
            _projections(switch),
            switch.activation,
            predict,
            row + 1 if predict is not None else None,
            router_probs=own.probs if own is not None else None,
        )
        setattr(parent, attr, streamed)
        compile_when_resident(block_of(parent), streamed)


class _Placeholder(nn.Module):
    """Stands in for a SwitchGLU while resident weights are evaluated."""


def _build_lazy(index: CheckpointIndex) -> tuple[nn.Module, dict]:
    from mlx_lm.utils import load_model

    try:
        model_classes(index.config)
    except ValueError:
        raise UnsupportedModelError(
            f"Architecture '{index.model_type}' is not supported by mlx-lm "
            f"{_mlx_lm_version()}; use an mlx-community MoE checkpoint (mixtral, qwen3_moe, "
            "qwen3_next, qwen3_5_moe, deepseek_v3, olmoe, ...)."
        ) from None
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
        detail = (str(exc).strip().splitlines() or [""])[0][:120]
        raise CheckpointError(
            f"Could not load the tokenizer from {path} ({type(exc).__name__}: {detail}); the folder "
            "needs tokenizer.json / tokenizer_config.json."
        ) from None


def _find_switches(model: nn.Module) -> list[tuple[str, Switch]]:
    """Every routed-expert module (SwitchGLU or SwitchMLP) with its parent and attribute."""
    from mlx_lm.models.switch_layers import SwitchGLU, SwitchMLP

    found: list[tuple[str, Switch]] = []
    for name, module in model.named_modules():
        for attr, child in module.children().items():
            if isinstance(child, (SwitchGLU, SwitchMLP)):
                found.append((f"{name}.{attr}" if name else attr, Switch(module, attr, child)))
    return found


def _match_layers(
    switches: list[tuple[str, Switch]], index: CheckpointIndex
) -> tuple[list[MoERow], list[tuple[str, str]]]:
    """Pair each expert module with its tensors on disk. Returns (streamed rows sorted by
    layer, [(module name, why it stays resident)])."""
    rows: list[MoERow] = []
    kept: list[tuple[str, str]] = []
    for name, switch in switches:
        m = _LAYER.search(name)
        files = index.moe_layers.get(int(m.group(1))) if m else None
        reason = _unstreamable(switch.module, files)
        if reason:
            kept.append((name, reason))
        else:
            assert m is not None and files is not None  # else _unstreamable gave a reason
            rows.append(MoERow(int(m.group(1)), switch, files))
    rows.sort(key=lambda r: r.layer)
    return rows, kept


def _unstreamable(switch: nn.Module, files: MoELayerFiles | None) -> str | None:
    """Why this module's experts cannot be read per expert from disk (None: they can).
    Every parameter must be one expert-contiguous tensor on disk with the same shape and
    dtype as mlx-lm's module holds (so sanitize did not reshape, fuse or convert it)."""
    if files is None:
        return "no per-expert tensors on disk (fused or renamed expert weights)"
    params = dict(tree_flatten(switch.parameters()))
    if set(params) != set(files.tensors):
        extra = sorted(set(params) ^ set(files.tensors))
        return f"expert tensors on disk do not match the module ({extra[0]})"
    for pname, value in params.items():
        tensor = files.tensors[pname]
        if (tensor.num_experts, *tensor.expert_shape) != tuple(value.shape):
            return f"{pname} is stored as {tensor.expert_shape}, the model uses {tuple(value.shape[1:])}"
        if tag_of_mx(value.dtype) != tensor.dtype:
            return f"{pname} is converted at load ({tensor.dtype} on disk, {value.dtype} in the model)"
    return None


def _resident_notice(kept: list[tuple[str, str]], total: int) -> str:
    if not kept:
        return ""
    return f"{len(kept)} of {total} MoE layers keep their experts fully resident: {kept[0][1]} ({kept[0][0]})."


def _pool_specs(files: MoELayerFiles, compute_dtype) -> dict[str, TensorSpec]:
    specs = {}
    for name, tensor in files.tensors.items():
        dtype = tensor.dtype
        if compute_dtype is not None and dtype in ("F16", "BF16"):  # as cast_half_floats does
            dtype = tag_of_mx(compute_dtype) or dtype
        specs[name] = TensorSpec(tensor.expert_shape, dtype)
    return specs


def _shape_groups(
    rows: list[MoERow], compute_dtype: mx.Dtype | None
) -> tuple[list[dict[str, TensorSpec]], list[ShapeGroup]]:
    """Rows whose experts have the same tensors, shapes and dtypes share one slot pool."""
    by_key: dict[tuple, list[int]] = {}
    specs_of: dict[tuple, dict[str, TensorSpec]] = {}
    for row, (_, _, files) in enumerate(rows):
        specs = _pool_specs(files, compute_dtype)
        key = (files.num_experts, *sorted((n, s.shape, s.dtype) for n, s in specs.items()))
        by_key.setdefault(key, []).append(row)
        specs_of[key] = specs
    keys = list(by_key)
    groups = [ShapeGroup(SlotPool.slot_nbytes(specs_of[k]), k[0], tuple(by_key[k])) for k in keys]
    return [specs_of[k] for k in keys], groups


def _projections(switch: nn.Module) -> dict[str, Projection]:
    out = {}
    for name, proj in switch.children().items():
        if not isinstance(proj, nn.Module) or "weight" not in proj:
            continue  # the activation
        quantized = "scales" in proj
        out[name] = Projection(
            name,
            quantized,
            getattr(proj, "group_size", 0),
            getattr(proj, "bits", 0),
            getattr(proj, "mode", "affine"),
            "bias" in proj,
        )
    return out


def _scope_finder(model: nn.Module) -> Callable[[nn.Module], list[nn.Module]]:
    """parent -> `parent` and the modules above it, up to its decoder layer (nearest first)."""
    modules = dict(model.named_modules())
    names = {id(module): name for name, module in modules.items()}

    def scopes(parent: nn.Module) -> list[nn.Module]:
        name = names.get(id(parent), "")
        found = [parent]
        while "." in name and not name.rsplit(".", 1)[1].isdigit():
            name = name.rsplit(".", 1)[0]
            found.append(modules[name])
        return found

    return scopes


def _block_finder(model: nn.Module) -> Callable[[nn.Module], nn.Module]:
    """parent -> the module its decoder layer calls for the MoE (the outermost of `parent` and
    the modules above it below the decoder layer): mlx-lm's MoE block, router included."""
    scopes_of = _scope_finder(model)
    names = {id(module): name for name, module in model.named_modules()}

    def block(parent: nn.Module) -> nn.Module:
        below = [m for m in scopes_of(parent) if not names.get(id(m), "").rsplit(".", 1)[-1].isdigit()]
        return below[-1] if below else parent

    return block


def _input_size(switch: nn.Module) -> int:
    """Width of the hidden state the experts read (their first projection's input)."""
    first = switch.gate_proj if hasattr(switch, "gate_proj") else switch.fc1
    width = first.weight.shape[-1]
    return width * 32 // first.bits if "scales" in first else width


def _num_layers(config: dict) -> int:
    cfg = config.get("text_config", config)
    return int(cfg.get("num_hidden_layers", cfg.get("n_layers", 0)))

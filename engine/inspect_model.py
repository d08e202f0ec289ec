"""How a model folder will run, from its safetensors headers alone (`outlier inspect`).

Nothing here reads tensor data or builds the model, so a 220 GB folder is
inspected in the time it takes to read a few headers. The budget comes from
the same rule the loader uses (engine/pool_plan.py), and expert bytes in
memory from the same slot-pool grouping: the prediction is what loading does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from engine import pool_plan
from engine.checkpoint import (
    CheckpointIndex,
    MoELayerFiles,
    TensorLocation,
    expected_num_experts,
    experts_per_token,
)
from engine.pool_plan import ShapeGroup

# Room for the KV cache, activations and MLX scratch on top of weights and cache
# (short chats; a long context needs more).
RUNTIME_ALLOWANCE = 1 << 30
_HALF_FLOATS = ("F16", "BF16")
_SHARED_KEYS = (
    "n_shared_experts",
    "num_shared_experts",
    "num_shared_expert",
    "moe_num_shared_experts",
    "shared_expert_count",
)


@dataclass(frozen=True)
class ExpertShape:
    """MoE layers whose experts have one size (mixed precision gives several)."""

    layers: int
    disk_bytes: int  # one expert on disk, all its tensors
    memory_bytes: int  # one expert in a cache slot (float tensors widened to float32 on the CPU)
    quantization: str


@dataclass
class ModelReport:
    path: str
    model_type: str
    num_layers: int
    moe_layers: int
    num_experts: int
    top_k: int
    shared_experts: int
    expert_shapes: list[ExpertShape]
    layout: str  # "stacked", "per-expert" or "none"
    expert_disk_bytes: int  # every routed expert, on disk
    expert_memory_bytes: int  # every routed expert, in memory
    backbone_disk_bytes: int  # everything else
    backbone_memory_bytes: int
    quantization: str
    memory_bytes: int  # the memory the verdict is for
    memory_source: str  # "this machine" or "--memory"
    min_cache_bytes: int
    default_cache_bytes: int
    predicted_peak_bytes: int
    read_per_token_bytes: int  # at a 0% cache hit rate
    kv_bytes_per_1k_tokens: int  # KV cache of 1,000 tokens, unquantized (--kv-bits 8 halves it)
    kv_bytes_at_context: int  # at the model's whole context (0: the config names none)
    context_length: int
    fits: bool
    verdict: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def inspect_model(
    path: str | Path, memory_bytes: int | None = None, float32_compute: bool | None = None
) -> ModelReport:
    """Describe how `path` will run with `memory_bytes` of RAM (default: this machine's,
    with what is available now for the budget). float32_compute: whether float tensors are
    widened to float32 in memory (default: yes on MLX's CPU backend)."""
    index = CheckpointIndex.open(path)
    config = index.config.get("text_config", index.config)
    if float32_compute is None:
        float32_compute = _cpu_backend()
    widen = 2 if float32_compute else 1

    layers = list(index.moe_layers.values())
    top_k = experts_per_token(index.config) if layers else 0
    groups, shapes = _shapes(layers, widen, index.config)
    expert_disk = sum(f.disk_bytes_per_expert * f.num_experts for f in layers)
    expert_memory = pool_plan.total_bytes(groups)
    total_disk = sum(t.nbytes for t in index.tensors.values())
    backbone_disk = total_disk - expert_disk
    backbone_memory = sum(
        t.nbytes * (widen if t.dtype in _HALF_FLOATS else 1) for t in index.tensors.values()
    ) - _expert_nbytes_widened(layers, widen)
    minimum = pool_plan.minimum_budget(groups, top_k)

    if memory_bytes is None:
        from engine import metal_memory

        vm = psutil.virtual_memory()
        # as the loader: on Metal the default budget comes from at most the recommended working set
        budget_from = metal_memory.budget_memory(metal_memory.device_memory(), vm.available)
        total, available, source = vm.total, vm.available, "this machine"
    else:
        total = available = budget_from = memory_bytes
        source = "--memory"
    budget = pool_plan.default_cache_budget(expert_memory, minimum, backbone_memory, budget_from) if layers else 0
    peak = backbone_memory + budget + RUNTIME_ALLOWANCE
    read_per_token = sum(top_k * f.disk_bytes_per_expert for f in layers)
    kv_per_token = kv_bytes_per_token(index.tensors, 4 if float32_compute else 2)
    context = _context_length(config)
    fits, verdict = _verdict(backbone_memory, minimum, peak, total, available, bool(layers))

    notes = []
    if index.unstacked_experts or (not layers and expected_num_experts(index.config)):
        notes.append(
            "The experts are not stored as a SwitchGLU/SwitchMLP layer stacks them: "
            "the whole model runs fully resident."
        )
    if float32_compute:
        notes.append("MLX's CPU backend computes in float32: float tensors take twice their bf16 size in memory.")
    return ModelReport(
        path=str(index.path),
        model_type=index.model_type,
        num_layers=int(config.get("num_hidden_layers", config.get("num_layers", 0)) or 0),
        moe_layers=len(layers),
        num_experts=expected_num_experts(index.config) or (layers[0].num_experts if layers else 0),
        top_k=top_k,
        shared_experts=_shared_experts(config),
        expert_shapes=shapes,
        layout=("none" if not layers else "stacked" if all(f.stacked for f in layers) else "per-expert"),
        expert_disk_bytes=expert_disk,
        expert_memory_bytes=expert_memory,
        backbone_disk_bytes=backbone_disk,
        backbone_memory_bytes=backbone_memory,
        quantization=_quantization(index.config),
        memory_bytes=total,
        memory_source=source,
        min_cache_bytes=minimum,
        default_cache_bytes=budget,
        predicted_peak_bytes=peak,
        read_per_token_bytes=read_per_token,
        kv_bytes_per_1k_tokens=kv_per_token * 1000,
        kv_bytes_at_context=kv_per_token * context,
        context_length=context,
        fits=fits,
        verdict=verdict,
        notes=notes,
    )


# what an attention layer writes to its KV cache per token: (tensor-name ending, the output
# width that is cached). MLA layers (DeepSeek V2/V3, Kimi, GLM-4.7) cache one latent vector
# plus the rope part: kv_a_proj_with_mqa's output.
_CACHED_PROJECTIONS = ("k_proj.weight", "v_proj.weight", "kv_a_proj_with_mqa.weight")


def kv_bytes_per_token(tensors: dict[str, TensorLocation], dtype_bytes: int) -> int:
    """KV cache bytes one token adds, from the attention projections' output widths: layers
    without them (linear attention, state-space) keep a fixed-size state instead. Sliding-window
    layers are counted in full: an upper bound for those models."""
    width = 0
    for name, tensor in tensors.items():
        if name.endswith(_CACHED_PROJECTIONS) and ".experts." not in name and tensor.shape:
            width += tensor.shape[0]
    return width * dtype_bytes


def _context_length(config: dict) -> int:
    for key in ("max_position_embeddings", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return config[key]
    return 0


def _cpu_backend() -> bool:
    import mlx.core as mx

    return mx.default_device() == mx.cpu


def _expert_nbytes_widened(layers: list[MoELayerFiles], widen: int) -> int:
    return sum(
        t.expert_nbytes * t.num_experts * (widen if t.dtype in _HALF_FLOATS else 1)
        for f in layers
        for t in f.tensors.values()
    )


def _shapes(layers: list[MoELayerFiles], widen: int, config: dict) -> tuple[list[ShapeGroup], list[ExpertShape]]:
    """Layers grouped as the loader groups them into slot pools (same tensors, shapes, dtypes)."""
    by_key: dict[tuple, list[int]] = {}
    for row, files in enumerate(layers):
        key = (
            files.num_experts,
            *sorted((n, t.expert_shape, _memory_dtype(t.dtype, widen)) for n, t in files.tensors.items()),
        )
        by_key.setdefault(key, []).append(row)
    groups, shapes = [], []
    for rows in by_key.values():
        files = layers[rows[0]]
        memory = sum(t.expert_nbytes * (widen if t.dtype in _HALF_FLOATS else 1) for t in files.tensors.values())
        groups.append(ShapeGroup(memory, files.num_experts, tuple(rows)))
        shapes.append(ExpertShape(len(rows), files.disk_bytes_per_expert, memory, _expert_format(files, config)))
    return groups, shapes


def _memory_dtype(dtype: str, widen: int) -> str:
    """The dtype a tensor has in a cache slot (the loader widens half floats to float32 on the CPU)."""
    return "F32" if widen == 2 and dtype in (*_HALF_FLOATS, "F32") else dtype


def _expert_format(files: MoELayerFiles, config: dict) -> str:
    """'affine 4-bit, group 64' etc.: config.json's quantization, with the per-module
    override mlx-lm writes for this layer's experts when there is one."""
    proj = files.projections[0]
    if f"{proj}.scales" not in files.tensors:
        return f"unquantized {files.tensors[f'{proj}.weight'].dtype.lower()}"
    quant = config.get("quantization") or config.get("quantization_config") or {}
    params = quant.get(f"{files.prefix}.{proj}")
    return _describe(params if isinstance(params, dict) else quant)


def _describe(quant: dict) -> str:
    mode = quant.get("mode", "affine")
    return f"{mode} {quant.get('bits', '?')}-bit, group {quant.get('group_size', '?')}"


def _shared_experts(config: dict) -> int:
    for key in _SHARED_KEYS:
        if isinstance(config.get(key), int):
            return config[key]
    if config.get("shared_expert_intermediate_size") or config.get("shared_intermediate_size"):
        return 1
    return 0


def _quantization(config: dict) -> str:
    quant = config.get("quantization") or config.get("quantization_config")
    if not isinstance(quant, dict):
        return "none"
    base = _describe(quant)
    overrides = sum(1 for v in quant.values() if isinstance(v, dict))
    return base + (f" ({overrides} per-module overrides)" if overrides else "")


def _verdict(backbone: int, minimum: int, peak: int, total: int, available: int, has_experts: bool) -> tuple[bool, str]:
    need = backbone + minimum + RUNTIME_ALLOWANCE
    if need > total:
        what = "the backbone and one layer's top-k experts" if has_experts else "the whole model"
        return False, (
            f"does not fit: {what} need {gb(need)} (with {gb(RUNTIME_ALLOWANCE)} for the "
            f"KV cache and scratch) but the machine has {gb(total)}"
        )
    if peak > available:
        return True, (
            f"runs with {gb(need)} free (now {gb(available)} is available): free memory or pass a smaller --cache-mb"
        )
    return True, f"runs: predicted peak {gb(peak)} of {gb(total)}, leaving {gb(total - peak)}"


def gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def format_report(r: ModelReport) -> str:
    """The human-readable report `outlier inspect` prints."""
    lines = [
        f"model         {r.path}",
        f"architecture  {r.model_type}, {r.num_layers} layers",
    ]
    if r.moe_layers:
        shared = f" + {r.shared_experts} shared" if r.shared_experts else ""
        lines.append(
            f"experts       {r.moe_layers} MoE layers x {r.num_experts} experts, top-{r.top_k}{shared} ({r.layout})"
        )
        for s in r.expert_shapes:
            lines.append(
                f"  per expert  {s.disk_bytes:,} bytes on disk, {s.memory_bytes:,} in memory "
                f"({s.quantization}; {s.layers} layer{'s' if s.layers != 1 else ''})"
            )
        lines.append(f"expert bytes  {gb(r.expert_disk_bytes)} on disk, {gb(r.expert_memory_bytes)} in memory")
    else:
        lines.append("experts       none (runs fully resident)")
    lines += [
        f"backbone      {gb(r.backbone_disk_bytes)} on disk, {gb(r.backbone_memory_bytes)} in memory",
        f"quantization  {r.quantization}",
        f"memory        {gb(r.memory_bytes)} ({r.memory_source})",
    ]
    if r.moe_layers:
        lines += [
            f"cache budget  {gb(r.default_cache_bytes)} by default (minimum {gb(r.min_cache_bytes)}; "
            f"--cache-mb to change)",
            f"read / token  {gb(r.read_per_token_bytes)} when no expert is cached (0% hits)",
        ]
    if r.kv_bytes_per_1k_tokens:
        at_context = f", {gb(r.kv_bytes_at_context)} at the full {r.context_length:,}" if r.context_length else ""
        lines.append(
            f"KV cache      {gb(r.kv_bytes_per_1k_tokens)} per 1k tokens{at_context} "
            "(--kv-bits 8 halves it, 4 quarters it)"
        )
    lines += [
        f"peak memory   {gb(r.predicted_peak_bytes)} predicted (weights + cache + {gb(RUNTIME_ALLOWANCE)} runtime)",
        f"verdict       {r.verdict}",
        *(f"note          {n}" for n in r.notes),
    ]
    return "\n".join(lines)

"""Index of an mlx-community style checkpoint folder, built from the
safetensors headers alone: where every routed expert's bytes live on disk.

Nothing here reads tensor data, so opening a 220 GB checkpoint costs a few
header reads. Every problem found becomes a one-line CheckpointError.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine import checkpoint_rules as rules
from engine.errors import CheckpointError, UnsupportedModelError

# Projections of the two mlx-lm expert modules: SwitchGLU and SwitchMLP.
GLU_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
MLP_PROJECTIONS = ("fc1", "fc2")
EXPERT_PARTS = ("weight", "scales", "biases", "bias", "global_scale")
# Hugging Face names of per-expert projections -> the SwitchGLU/SwitchMLP name sanitize gives them
_PER_EXPERT_PROJ = {
    "w1": "gate_proj",
    "w3": "up_proj",
    "w2": "down_proj",
    "gate_proj": "gate_proj",
    "up_proj": "up_proj",
    "down_proj": "down_proj",
    "fc1": "fc1",
    "fc2": "fc2",
}
_PROJ = "|".join((*GLU_PROJECTIONS, *MLP_PROJECTIONS))
_PART = "|".join(EXPERT_PARTS)
# a stacked expert tensor [E, ...], as mlx-lm saves it (the switch module's own name)
_STACKED = re.compile(
    rf"^(?P<prefix>(?:[^.]+\.)*?(?P<layer>\d+)\.(?:.*\.)?(?:switch_mlp|switch_glu|experts))"
    rf"\.(?P<proj>{_PROJ})\.(?P<part>{_PART})$"
)
# one tensor per expert, as Hugging Face publishes it (mlx-lm's sanitize stacks these)
_PER_EXPERT = re.compile(
    rf"^(?P<prefix>(?:[^.]+\.)*?(?P<layer>\d+)\.(?:.*\.)?experts)\.(?P<expert>\d+)"
    rf"\.(?P<proj>\w+)\.(?P<part>{_PART})$"
)


@dataclass(frozen=True)
class TensorLocation:
    """One tensor's bytes in one file (absolute offset)."""

    file: Path
    offset: int
    nbytes: int
    dtype: str  # safetensors tag, e.g. "BF16"
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ExpertTensor:
    """One expert tensor of one layer. Expert e's bytes are one contiguous range: a slice
    of a stacked [E, ...] tensor (mlx-community layout) or a tensor of its own (the raw
    Hugging Face layout, one tensor per expert)."""

    location: TensorLocation  # the stacked tensor, or expert 0's tensor
    per_expert: tuple[TensorLocation, ...] = ()  # empty when stacked

    @property
    def stacked(self) -> bool:
        return not self.per_expert

    @property
    def num_experts(self) -> int:
        return len(self.per_expert) if self.per_expert else self.location.shape[0]

    @property
    def dtype(self) -> str:
        return self.location.dtype

    @property
    def expert_shape(self) -> tuple[int, ...]:
        return self.location.shape if self.per_expert else self.location.shape[1:]

    @property
    def expert_nbytes(self) -> int:
        if self.per_expert:
            return self.location.nbytes
        return self.location.nbytes // self.num_experts

    def expert_file(self, expert: int) -> Path:
        return self.per_expert[expert].file if self.per_expert else self.location.file

    def expert_range(self, expert: int) -> tuple[int, int]:
        """(absolute file offset, byte count) of one expert's bytes in expert_file(expert)."""
        if self.per_expert:
            loc = self.per_expert[expert]
            return loc.offset, loc.nbytes
        return self.location.offset + expert * self.expert_nbytes, self.expert_nbytes


@dataclass
class MoELayerFiles:
    """Every expert tensor of one MoE layer, keyed 'gate_proj.weight' etc."""

    layer: int
    prefix: str  # tensor-name prefix of the experts ('...switch_mlp' or '...experts')
    tensors: dict[str, ExpertTensor] = field(default_factory=dict)

    @property
    def num_experts(self) -> int:
        return next(iter(self.tensors.values())).num_experts

    @property
    def stacked(self) -> bool:
        return all(t.stacked for t in self.tensors.values())

    @property
    def projections(self) -> tuple[str, ...]:
        names = {n.split(".")[0] for n in self.tensors}
        return MLP_PROJECTIONS if names <= set(MLP_PROJECTIONS) else GLU_PROJECTIONS

    @property
    def disk_bytes_per_expert(self) -> int:
        return sum(t.expert_nbytes for t in self.tensors.values())


@dataclass
class CheckpointIndex:
    path: Path
    config: dict
    tensors: dict[str, TensorLocation]
    moe_layers: dict[int, MoELayerFiles]
    file_sizes: dict[Path, int]
    unstacked_experts: bool = False  # per-expert tensors found that no Switch layer stacks

    @property
    def model_type(self) -> str:
        return self.config.get("model_type", "")

    @classmethod
    def open(cls, path: str | os.PathLike) -> CheckpointIndex:
        folder = Path(path).expanduser()
        if not folder.exists():
            raise CheckpointError(
                f"Model folder not found: {folder}. Pass --model a folder with config.json and model*.safetensors."
            )
        if not folder.is_dir():
            raise CheckpointError(f"{folder} is a file; --model wants the folder that holds it.")
        config = _read_config(folder)
        files = _weight_files(folder)
        tensors: dict[str, TensorLocation] = {}
        sizes: dict[Path, int] = {}
        for f in files:
            sizes[f] = f.stat().st_size
            tensors.update(read_safetensors_header(f))
        rules.check_quantized_shapes(config, tensors)
        index = cls(folder, config, tensors, _find_expert_tensors(tensors), sizes)
        index._validate_experts()
        return index

    def _validate_experts(self) -> None:
        expected = expected_num_experts(self.config)
        for layer, files in list(self.moe_layers.items()):
            if not files.stacked and any(f"{p}.weight" not in files.tensors for p in files.projections):
                # per-expert tensors that sanitize does not stack into a Switch layer (dbrx's
                # experts.N.v1/w1/w2): not streamable; the loader keeps such experts resident
                del self.moe_layers[layer]
                self.unstacked_experts = True
                continue
            for proj in files.projections:
                if f"{proj}.weight" not in files.tensors:
                    raise CheckpointError(
                        f"Layer {layer} lacks {files.prefix}.{proj}.weight: the checkpoint is "
                        "incomplete. Re-download or re-convert it."
                    )
            counts = {t.num_experts for t in files.tensors.values()}
            if len(counts) != 1 or (expected is not None and counts != {expected}):
                raise CheckpointError(
                    f"Layer {layer} expert tensors hold {sorted(counts)} experts but config.json "
                    f"says {expected}: the checkpoint does not match its config."
                )
            for name, t in files.tensors.items():
                if t.stacked and t.location.nbytes % t.num_experts:
                    raise CheckpointError(f"{files.prefix}.{name} does not split evenly into {t.num_experts} experts.")
                if {(p.shape, p.dtype) for p in t.per_expert} - {(t.location.shape, t.dtype)}:
                    raise CheckpointError(f"The per-expert tensors {files.prefix}.*.{name} differ in shape or dtype.")


def expected_num_experts(config: dict) -> int | None:
    cfg = config.get("text_config", config)
    for key in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return None


def experts_per_token(config: dict) -> int:
    """Routed experts each token uses (top-k), from whichever key the architecture uses."""
    cfg = config.get("text_config", config)
    for key in (
        "num_experts_per_tok",
        "num_experts_per_token",
        "moe_top_k",
        "moe_topk",
        "moe_k",
        "top_k_experts",
        "top_k",
    ):
        value = cfg.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            return max(value)  # per-layer top-k: budget for the largest
    raise UnsupportedModelError("config.json does not say how many experts each token uses.")


def _read_config(folder: Path) -> dict:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{folder} has no config.json: it is not a model folder (expected an "
            "mlx-community style folder with config.json and model*.safetensors)."
        )
    config = rules.read_json_file(cfg_path, "fix it or re-download it")
    rules.check_config(config, cfg_path)
    assert isinstance(config, dict)  # check_config refuses anything else
    return config


def _weight_files(folder: Path) -> list[Path]:
    index_path = folder / "model.safetensors.index.json"
    if index_path.exists() or index_path.is_symlink():
        rules.check_weight_map(index_path)
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no model*.safetensors weight files.")
    for f in files:
        rules.check_weight_file(f)
    return files


def read_safetensors_header(file: Path) -> dict[str, TensorLocation]:
    """Parse a safetensors header and check it strictly (checkpoint_rules.check_header)."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as fh:
            header_len = rules.header_length(file, fh.read(8), size)
            header_bytes = fh.read(header_len)
    except OSError as exc:
        raise CheckpointError(f"Cannot read {file} ({rules.file_problem(file, exc)}).") from None
    data_start = 8 + header_len
    return {
        e.name: TensorLocation(file, data_start + e.begin, e.end - e.begin, e.dtype, e.shape)
        for e in rules.check_header(file, header_bytes, size)
    }


def _find_expert_tensors(tensors: dict[str, TensorLocation]) -> dict[int, MoELayerFiles]:
    """Stacked expert tensors by name; per-expert tensors gathered per (layer, projection)."""
    layers: dict[int, MoELayerFiles] = {}
    per_expert: dict[tuple[int, str, str], dict[int, TensorLocation]] = {}
    prefixes: dict[int, str] = {}
    for name, loc in tensors.items():
        m = _STACKED.match(name)
        if m:
            rules.check_expert_shape(loc.file, name, loc.shape)
        if m and loc.shape:
            layer = int(m["layer"])
            entry = layers.setdefault(layer, MoELayerFiles(layer, m["prefix"]))
            entry.tensors[f"{m['proj']}.{m['part']}"] = ExpertTensor(loc)
            continue
        m = _PER_EXPERT.match(name)
        if m and m["proj"] in _PER_EXPERT_PROJ:
            key = (int(m["layer"]), _PER_EXPERT_PROJ[m["proj"]], m["part"])
            per_expert.setdefault(key, {})[int(m["expert"])] = loc
            prefixes[key[0]] = m["prefix"]
    for (layer, proj, part), by_expert in per_expert.items():
        if f"{proj}.{part}" in layers.get(layer, MoELayerFiles(layer, "")).tensors:
            continue  # a stacked copy of the same tensor wins
        if sorted(by_expert) != list(range(len(by_expert))):
            missing = min(set(range(max(by_expert) + 1)) - set(by_expert))
            raise CheckpointError(
                f"Layer {layer} has no tensor for expert {missing} ({proj}.{part}): the "
                "checkpoint is incomplete. Re-download it."
            )
        entry = layers.setdefault(layer, MoELayerFiles(layer, prefixes[layer]))
        ordered = tuple(by_expert[e] for e in range(len(by_expert)))
        entry.tensors[f"{proj}.{part}"] = ExpertTensor(ordered[0], ordered)
    return dict(sorted(layers.items()))

"""Index of an mlx-community style checkpoint folder, built from the
safetensors headers alone: where every routed expert's bytes live on disk.

Nothing here reads tensor data, so opening a 220 GB checkpoint costs a few
header reads. Every problem found becomes a one-line CheckpointError.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import CheckpointError, UnsupportedModelError

# safetensors dtype tag -> (numpy dtype name, bytes per element)
DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "U32": ("uint32", 4),
    "I32": ("int32", 4),
    "U16": ("uint16", 2),
    "I16": ("int16", 2),
    "U8": ("uint8", 1),
    "I8": ("int8", 1),
    "I64": ("int64", 8),
    "BOOL": ("bool", 1),
    "F8_E4M3": ("uint8", 1),
    "F8_E5M2": ("uint8", 1),
}

# Projections of the two mlx-lm expert modules: SwitchGLU and SwitchMLP.
GLU_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
MLP_PROJECTIONS = ("fc1", "fc2")
EXPERT_PARTS = ("weight", "scales", "biases", "bias", "global_scale")
# Hugging Face names of per-expert projections -> the SwitchGLU/SwitchMLP name sanitize gives them
_PER_EXPERT_PROJ = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj", "gate_proj": "gate_proj",
                    "up_proj": "up_proj", "down_proj": "down_proj", "fc1": "fc1", "fc2": "fc2"}
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
_MAX_HEADER = 512 * 1024 * 1024


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

    @property
    def model_type(self) -> str:
        return self.config.get("model_type", "")

    @classmethod
    def open(cls, path: str | os.PathLike) -> "CheckpointIndex":
        folder = Path(path).expanduser()
        if not folder.exists():
            raise CheckpointError(
                f"Model folder not found: {folder}. Pass --model a folder with config.json "
                "and model*.safetensors."
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
        index = cls(folder, config, tensors, _find_expert_tensors(tensors), sizes)
        index._validate_experts()
        return index

    def _validate_experts(self) -> None:
        expected = expected_num_experts(self.config)
        for layer, files in self.moe_layers.items():
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
                    raise CheckpointError(
                        f"{files.prefix}.{name} does not split evenly into {t.num_experts} experts."
                    )
                if {(p.shape, p.dtype) for p in t.per_expert} - {(t.location.shape, t.dtype)}:
                    raise CheckpointError(
                        f"The per-expert tensors {files.prefix}.*.{name} differ in shape or dtype."
                    )

    def check_files_unchanged(self) -> None:
        """Refuse to stream from a shard that was replaced or shrunk since load."""
        for f, size in self.file_sizes.items():
            try:
                now = f.stat().st_size
            except OSError as exc:
                raise CheckpointError(
                    f"{f.name} is no longer readable ({exc.strerror}); reload the model."
                ) from None
            if now < size:
                raise CheckpointError(
                    f"{f.name} shrank from {size} to {now} bytes since the model was loaded; "
                    "restore the file or reload the model."
                )


def expected_num_experts(config: dict) -> int | None:
    cfg = config.get("text_config", config)
    for key in ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return None


def experts_per_token(config: dict) -> int:
    """Routed experts each token uses (top-k), from whichever key the architecture uses."""
    cfg = config.get("text_config", config)
    for key in ("num_experts_per_tok", "num_experts_per_token", "moe_top_k", "moe_topk", "moe_k",
                "top_k_experts", "top_k"):
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
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({exc}).") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError(f"{cfg_path} has no model_type; is this a Hugging Face/MLX config?")
    return config


def _weight_files(folder: Path) -> list[Path]:
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index_path.name} is malformed ({exc}).") from None
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise CheckpointError(
                f"Shard {missing[0]} listed in {index_path.name} is missing "
                f"({len(missing)} of {len(names)} shards missing); finish the download."
            )
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no model*.safetensors weight files.")
    return files


def read_safetensors_header(file: Path) -> dict[str, TensorLocation]:
    """Parse a safetensors header and check that every tensor lies inside the file."""
    size = file.stat().st_size
    with open(file, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{file.name} is truncated ({size} bytes): re-download it.")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > min(size - 8, _MAX_HEADER):
            raise CheckpointError(
                f"{file.name} has a corrupt or truncated header (claims {header_len} bytes, "
                f"file has {size}): re-download it."
            )
        try:
            header = json.loads(fh.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{file.name} has a corrupt header: re-download it.") from None
    data_start = 8 + header_len
    out: dict[str, TensorLocation] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = meta["dtype"], tuple(meta["shape"]), meta["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{file.name}: bad header entry for {name}.") from None
        if dtype not in DTYPES:
            raise UnsupportedModelError(f"{file.name}: tensor {name} has unsupported dtype {dtype}.")
        if end - begin != math.prod(shape) * DTYPES[dtype][1] or begin < 0:
            raise CheckpointError(f"{file.name}: tensor {name} size does not match its shape.")
        if data_start + end > size:
            raise CheckpointError(
                f"{file.name} is truncated: tensor {name} ends at byte {data_start + end} "
                f"but the file has {size} bytes. Re-download it."
            )
        out[name] = TensorLocation(file, data_start + begin, end - begin, dtype, shape)
    return out


def _find_expert_tensors(tensors: dict[str, TensorLocation]) -> dict[int, MoELayerFiles]:
    """Stacked expert tensors by name; per-expert tensors gathered per (layer, projection)."""
    layers: dict[int, MoELayerFiles] = {}
    per_expert: dict[tuple[int, str, str], dict[int, TensorLocation]] = {}
    prefixes: dict[int, str] = {}
    for name, loc in tensors.items():
        m = _STACKED.match(name)
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

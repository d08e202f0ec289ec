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

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
EXPERT_PARTS = ("weight", "scales", "biases", "bias")
_STACKED = re.compile(
    r"^(?P<prefix>.*\blayers\.(?P<layer>\d+)\..*?switch_mlp)\.(?P<proj>\w+)\.(?P<part>\w+)$"
)
_PER_EXPERT = re.compile(r"\bexperts\.\d+\.")


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
    """A stacked expert tensor [E, ...]: expert e is one contiguous byte range."""

    location: TensorLocation

    @property
    def num_experts(self) -> int:
        return self.location.shape[0]

    @property
    def expert_shape(self) -> tuple[int, ...]:
        return self.location.shape[1:]

    @property
    def expert_nbytes(self) -> int:
        return self.location.nbytes // self.num_experts

    def expert_range(self, expert: int) -> tuple[int, int]:
        """(absolute file offset, byte count) of one expert's slice."""
        return self.location.offset + expert * self.expert_nbytes, self.expert_nbytes


@dataclass
class MoELayerFiles:
    """Every stacked expert tensor of one MoE layer, keyed 'gate_proj.weight' etc."""

    layer: int
    prefix: str  # tensor-name prefix up to and including 'switch_mlp'
    tensors: dict[str, ExpertTensor] = field(default_factory=dict)

    @property
    def num_experts(self) -> int:
        return next(iter(self.tensors.values())).num_experts


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
        rules.check_quantized_shapes(config, tensors)
        index = cls(folder, config, tensors, _find_expert_tensors(tensors), sizes)
        index._validate_experts()
        return index

    def _validate_experts(self) -> None:
        per_expert = sorted(n for n in self.tensors if _PER_EXPERT.search(n))
        if per_expert:
            raise UnsupportedModelError(
                f"Experts are stored one tensor per expert (e.g. {per_expert[0]}); Outlier "
                "streams stacked experts. Convert the model with `mlx_lm.convert` first."
            )
        expected = expected_num_experts(self.config)
        for layer, files in self.moe_layers.items():
            for proj in PROJECTIONS:
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
                if t.location.nbytes % t.num_experts:
                    raise CheckpointError(
                        f"{files.prefix}.{name} does not split evenly into {t.num_experts} experts."
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


def _read_config(folder: Path) -> dict:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{folder} has no config.json: it is not a model folder (expected an "
            "mlx-community style folder with config.json and model*.safetensors)."
        )
    config = rules.read_json_file(cfg_path, "fix it or re-download it")
    rules.check_config(config, cfg_path)
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
    return {e.name: TensorLocation(file, data_start + e.begin, e.end - e.begin, e.dtype, e.shape)
            for e in rules.check_header(file, header_bytes, size)}


def _find_expert_tensors(tensors: dict[str, TensorLocation]) -> dict[int, MoELayerFiles]:
    layers: dict[int, MoELayerFiles] = {}
    for name, loc in tensors.items():
        m = _STACKED.match(name)
        if not m or m["proj"] not in PROJECTIONS or m["part"] not in EXPERT_PARTS:
            continue
        rules.check_expert_shape(loc.file, name, loc.shape)
        layer = int(m["layer"])
        entry = layers.setdefault(layer, MoELayerFiles(layer, m["prefix"]))
        entry.tensors[f"{m['proj']}.{m['part']}"] = ExpertTensor(loc)
    return dict(sorted(layers.items()))

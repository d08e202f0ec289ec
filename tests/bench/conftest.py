import sys
from pathlib import Path

# `bench` is a top-level package of the repository (not installed by every install).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

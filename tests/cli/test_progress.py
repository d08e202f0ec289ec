"""The command line's progress bar (rich.progress) fed by the engine's LoadProgress events."""

import io
import threading

from engine.api import LoadProgress
from outlier_tui.progress import progress_bar


def test_final_state_is_drawn_once_off_a_terminal():
    out = io.StringIO()
    with progress_bar("loading model", out) as on_progress:
        on_progress(LoadProgress(0.25, "reading checkpoint index"))
        # the engine reports from its own thread
        worker = threading.Thread(target=on_progress, args=(LoadProgress(1.0, "ready"),))
        worker.start()
        worker.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("loading model") and "100%" in lines[0] and lines[0].endswith("ready")


def test_nothing_is_drawn_without_an_event():
    out = io.StringIO()
    with progress_bar("building demo model", out, transient=True):
        pass
    assert out.getvalue() == ""


def test_fraction_is_clamped():
    out = io.StringIO()
    with progress_bar("x", out) as on_progress:
        on_progress(LoadProgress(1.7, "done"))
    assert "100%" in out.getvalue() and "170%" not in out.getvalue()

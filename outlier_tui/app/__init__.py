"""The full-screen Textual chat app (`outlier`, `outlier chat`)."""

from __future__ import annotations

from outlier_tui.app.run import run_app

__all__ = ["OutlierApp", "run_app"]


def __getattr__(name: str):
    # Importing the app pulls in Textual; `run_app` alone stays cheap.
    if name == "OutlierApp":
        from outlier_tui.app.main import OutlierApp

        return OutlierApp
    raise AttributeError(name)

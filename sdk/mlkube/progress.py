"""The progress bar of `.wait()`: tqdm's bar in Jupyter and on terminals, plain lines elsewhere.

A wait has a few countable steps (a Dataset: the operator saw it, its profile Job ran,
Ready; a TrainingRun: the operator saw it, its Dataset is ready, the Job runs, Succeeded;
a ModelDeployment: each ready replica, then Ready), so the bar counts those steps and its
postfix says the phase (condition reason and message, the Job's pods). tqdm (the most used
maintained progress bar library) draws it: its widget in Jupyter when ipywidgets is
installed, else its text bar, which Jupyter and terminals redraw in place. Output that is
neither a terminal nor a notebook (a log file, CI) gets one plain line per change, never
carriage returns.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (IPython is optional, looked up only if imported)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _notebook_bar() -> Any:
    """tqdm's widget bar when ipywidgets is there, else None."""
    try:
        from tqdm import notebook
    except ImportError:  # pragma: no cover - tqdm.notebook imports without ipywidgets
        return None
    return notebook.tqdm if getattr(notebook, "IProgress", None) is not None else None


class Progress:
    """One wait's display: `update(step, total, text, elapsed)` while polling, then `close(...)`."""

    def __init__(self, title: str, stream: TextIO | None = None, mode: str | None = None) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.mode = mode or self._mode()
        self.bar: Any = None
        self.last = ""

    def _mode(self) -> str:
        if _in_kernel():
            return "notebook"
        isatty = getattr(self.stream, "isatty", None)
        return "bar" if callable(isatty) and isatty() else "lines"

    def _open(self, total: int) -> Any:
        from tqdm import std

        kwargs: dict[str, Any] = {
            "total": total,
            "desc": self.title,
            "unit": "step",
            "bar_format": "{desc}: {bar} {n_fmt}/{total_fmt} [{elapsed}]{postfix}",
            "leave": True,
        }
        widget = _notebook_bar() if self.mode == "notebook" else None
        if widget is not None:
            return widget(**kwargs)
        return std.tqdm(file=self.stream, dynamic_ncols=True, **kwargs)

    def update(self, step: int, total: int, text: str, elapsed: float) -> None:
        total = max(total, 1)
        step = max(0, min(step, total))
        if self.mode == "lines":
            line = f"{self.title} [{elapsed:5.0f}s] step {step}/{total}: {text}"
            if text != self.last:
                self.stream.write(line + "\n")
                self.stream.flush()
            self.last = text
            return
        if self.bar is None:
            self.bar = self._open(total)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = step
        self.bar.set_postfix_str(text[:200], refresh=False)
        self.bar.refresh()
        self.last = text

    def close(self, step: int, total: int, text: str, elapsed: float) -> None:
        self.update(step, total, text, elapsed)
        if self.bar is not None:
            self.bar.close()

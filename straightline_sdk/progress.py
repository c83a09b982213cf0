"""Progress for long work (maps, image builds, uploads): a widget in a
notebook, a text bar on a terminal, nothing for work that ends within
``delay_s`` (a progress bar that flashes for 50 ms is noise).
"""

from __future__ import annotations

import sys
import threading
import time

from .config import settings


def in_notebook() -> bool:
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


class Progress:
    """``total=None`` for work of unknown length (a build): ``step(text)`` lines."""

    def __init__(self, label: str, total: int | None = None, *, delay_s: float = 1.0,
                 enabled: bool | None = None, stream=None):
        forced = settings().progress if enabled is None else enabled
        self.enabled = forced is not False
        self.delay_s = 0.0 if forced else delay_s
        self.label = label
        self.total = total
        self.done = 0
        self.errors = 0
        self.last_step = ""
        self.stream = stream or sys.stderr
        self._start = time.monotonic()
        self._shown = False
        self._widget = None
        self._last_draw = 0.0
        self._lock = threading.Lock()
        self._notebook = in_notebook()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def advance(self, n: int = 1, errors: int = 0) -> None:
        with self._lock:
            self.done += n
            self.errors += errors
            self._maybe_draw()

    def step(self, text: str) -> None:
        with self._lock:
            self.last_step = text
            if not self._notebook and self.enabled and (self._shown or self._due()):
                self._shown = True
                print(f"{self.label}: {text}", file=self.stream, flush=True)
            else:
                self._maybe_draw()

    def _due(self) -> bool:
        return time.monotonic() - self._start >= self.delay_s

    def _maybe_draw(self, final: bool = False) -> None:
        if not self.enabled or (not self._shown and not (final and self._shown) and not self._due()):
            return
        now = time.monotonic()
        if not final and now - self._last_draw < 0.1:  # at most 10 redraws a second
            return
        self._last_draw = now
        self._shown = True
        if self._notebook:
            self._draw_widget()
        elif self.total is not None and getattr(self.stream, "isatty", lambda: False)():
            width = 30
            filled = int(width * self.done / max(1, self.total))
            err = f", {self.errors} failed" if self.errors else ""
            end = "\n" if final else ""
            self.stream.write(f"\r{self.label} [{'#' * filled}{'-' * (width - filled)}] "
                              f"{self.done}/{self.total}{err}{end}")
            self.stream.flush()

    def _text(self) -> str:
        if self.total is None:
            return f"{self.label}: {self.last_step}"
        err = f", {self.errors} failed" if self.errors else ""
        return f"{self.label}: {self.done}/{self.total}{err}"

    def _draw_widget(self) -> None:
        import ipywidgets as widgets
        from IPython.display import display
        if self._widget is None:
            bar = widgets.IntProgress(min=0, max=self.total or 1, value=self.done,
                                      layout=widgets.Layout(width="40%"))
            text = widgets.Label(self._text())
            self._widget = widgets.HBox([bar, text])
            display(self._widget)
        bar, text = self._widget.children
        bar.value = self.done if self.total is not None else 0
        text.value = self._text()

    def close(self) -> None:
        with self._lock:
            if self._shown:
                self._maybe_draw(final=True)
                if self._widget is not None:
                    self._widget.children[0].bar_style = "danger" if self.errors else "success"

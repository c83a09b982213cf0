"""Progress for long work, and nothing for quick work.

Two kinds:

- a **bar** (``total`` known: a map's items) is ``tqdm.auto``: a widget in a
  notebook, a text bar on a terminal; it appears only once the work has taken
  ``delay_s`` (tqdm's own ``delay``).
- **steps** (``total=None``: deploying a target) are phases (``step("building
  straightline/f:1a2b")``) with detail lines in between (a Dockerfile's ``Step
  3/7``). A phase that runs past ``delay_s`` is announced while it runs, with
  its elapsed time, and so is each of its details that does; quick ones stay
  quiet. When the work ends, and if
  anything was shown, a final line says what happened: ``deploying f to
  docker: image built in 12 s, container started in 1.2 s`` (or where it
  failed). In a notebook this is one widget whose label ends in that state.
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


#: how a phase reads once done, by the start of its step text
_DONE = (
    ("building the bundle", "bundle built"),
    ("building ", "image built"),
    ("pulling the base image", "base image pulled"),
    ("starting a container", "container started"),
    ("reusing the running container", "running container reused"),
    ("downloading wheels", "wheels downloaded"),
    ("wheels for", "wheels chosen"),
    ("uploading", "code uploaded"),
    ("code unchanged", "code unchanged"),
    ("checking Lambda function", "Lambda function checked"),
    ("creating Lambda function", "Lambda function created"),
    ("creating S3 bucket", "S3 bucket created"),
    ("creating the minimal execution role", "execution role created"),
    ("updating the code", "code updated"),
    ("updating the configuration", "configuration updated"),
    ("capturing the function's dependencies", "dependencies captured"),
    ("putting the function in the object store", "function stored"),
    ("starting the actor", "actor started"),
)
#: step lines that are details of the phase running (a Dockerfile's steps)
_DETAIL_PREFIXES = ("Step ",)
#: phases shorter than this are left out of the final line (unless nothing else is there)
_NOTABLE_S = 0.05


def done_text(step: str) -> str:
    for prefix, text in _DONE:
        if step.startswith(prefix):
            return text
    return step.split(":")[0].strip() + " done" if step else "done"


def seconds(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {int(s % 60)} s"


class Progress:
    """``total=None`` for work of unknown length (a deploy): ``step(text)``."""

    def __init__(self, label: str, total: int | None = None, *, delay_s: float = 1.0,
                 enabled: bool | None = None, stream=None, clock=time.monotonic,
                 tick_s: float | None = 0.25):
        forced = settings().progress if enabled is None else enabled
        self.enabled = forced is not False
        self.delay_s = 0.0 if forced else delay_s
        self.label = label
        self.total = total
        self.done = 0
        self.errors = 0
        self.last_step = ""
        self.stream = stream or sys.stderr
        self.summary = ""               # the final state, once closed
        self._clock = clock
        self._start = clock()
        self._lock = threading.RLock()
        self._notebook = in_notebook() and stream is None
        self._bar = None
        self._widget = None
        self._closed = False
        # steps: [text, started, ended or None, announced]
        self._phases: list[list] = []
        self._detail = ""
        self._detail_since = 0.0
        self._detail_shown = False
        self._shown = False
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._tick_s = tick_s
        if total is not None and self.enabled:
            self._bar = self._make_bar()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(error=exc)

    # -- bars -------------------------------------------------------------------------

    def _make_bar(self):
        from tqdm.auto import tqdm
        options = dict(total=self.total, desc=self.label, delay=self.delay_s, unit="call",
                       leave=True, dynamic_ncols=True)
        if not self._notebook:
            options["file"] = self.stream
        return tqdm(**options)

    def advance(self, n: int = 1, errors: int = 0) -> None:
        with self._lock:
            self.done += n
            self.errors += errors
            if self._bar is not None:
                if errors:
                    self._bar.set_postfix_str(f"{self.errors} failed", refresh=False)
                self._bar.update(n)

    def printing(self):
        """A context in which lines may be printed while a terminal bar shows:
        the bar is cleared first and redrawn after."""
        if self._bar is not None and not self._notebook:
            from tqdm.auto import tqdm
            return tqdm.external_write_mode(file=self.stream)
        import contextlib
        return contextlib.nullcontext()

    # -- steps --------------------------------------------------------------------------

    def step(self, text: str) -> None:
        """A new phase, or (a Dockerfile's ``Step n/m``) a detail of the current one."""
        if not self.enabled:
            self.last_step = text
            return
        with self._lock:
            self.last_step = text
            now = self._clock()
            if text.startswith(_DETAIL_PREFIXES) and self._phases:
                # a detail of the running phase: shown, like a phase, once it is slow
                self._detail, self._detail_since, self._detail_shown = text, now, False
                self._check(now)
                return
            if self._phases and self._phases[-1][2] is None:
                self._phases[-1][2] = now
            self._phases.append([text, now, None, False])
            self._detail, self._detail_shown = "", False
            self._check(now)
            if self._ticker is None and self._tick_s:
                self._ticker = threading.Thread(target=self._tick_loop, daemon=True,
                                                name="straightline-progress")
                self._ticker.start()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self._tick_s):
            self.tick()

    def tick(self) -> None:
        """Announce the running phase once it has taken ``delay_s``; refresh the
        notebook label's elapsed time. Called by a timer thread (and by tests)."""
        with self._lock:
            if not self._closed:
                self._check(self._clock())

    def _check(self, now: float) -> None:
        if not self._phases:
            return
        phase = self._phases[-1]
        elapsed = now - phase[1]
        slow_detail = (self._detail and not self._detail_shown
                       and now - self._detail_since >= self.delay_s)
        if phase[2] is None and ((not phase[3] and elapsed >= self.delay_s) or (phase[3] and slow_detail)):
            phase[3] = True
            self._detail_shown = bool(self._detail)
            detail = f": {self._detail}" if self._detail else ""
            self._say(f"{phase[0]}{detail} ({seconds(elapsed)})", running=True)
        elif phase[3] and self._notebook:
            self._show_widget(f"{phase[0]}{': ' + self._detail if self._detail else ''} "
                              f"({seconds(elapsed)})", running=True)

    def _say(self, text: str, running: bool = False) -> None:
        self._shown = True
        if self._notebook:
            self._show_widget(text, running)
        else:
            print(f"{self.label}: {text}", file=self.stream, flush=True)

    def _show_widget(self, text: str, running: bool, style: str = "") -> None:
        try:
            import ipywidgets as widgets
            from IPython.display import display
        except ImportError:
            return
        if self._widget is None:
            bar = widgets.IntProgress(min=0, max=1, value=1, bar_style="info",
                                      layout=widgets.Layout(width="120px"))
            label = widgets.HTML()
            self._widget = widgets.HBox([bar, label])
            self._widget.add_class("straightline-progress")
            display(self._widget)
        bar, label = self._widget.children
        label.value = f"<b>{_esc(self.label)}</b>: {_esc(text)}" + (" …" if running else "")
        if style:
            bar.bar_style = style

    def _final_text(self, now: float, error: BaseException | None) -> str:
        total_s = now - self._start
        if error is not None:
            where = self._phases[-1][0] if self._phases else "the start"
            return f"failed after {seconds(total_s)}, while {where}: {type(error).__name__}"
        merged: dict[str, list] = {}
        for text, started, ended, _ in self._phases:
            name = done_text(text)
            entry = merged.setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] += (ended if ended is not None else now) - started
        parts = [f"{name if count == 1 else _plural(name, count)} in {seconds(dur)}"
                 for name, (count, dur) in merged.items() if dur >= _NOTABLE_S]
        return ", ".join(parts) if parts else f"ready in {seconds(total_s)}"

    # -- the end ------------------------------------------------------------------------

    def close(self, error: BaseException | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            now = self._clock()
            if self._phases and self._phases[-1][2] is None:
                self._phases[-1][2] = now
            if self._bar is not None:
                self._bar.close()
                return
            if not self.enabled or not self._phases:
                return
            self.summary = self._final_text(now, error)
            if not self._shown and now - self._start < self.delay_s:
                return   # quick work: nothing was shown, nothing is said (an error says itself)
            if self._notebook:
                self._show_widget(self.summary, False, "danger" if error is not None else "success")
            else:
                print(f"{self.label}: {self.summary}", file=self.stream, flush=True)


def _plural(done: str, count: int) -> str:
    noun, _, rest = done.partition(" ")
    return f"{count} {noun}s {rest}" if rest else f"{count} × {done}"


def _esc(text: str) -> str:
    import html
    return html.escape(str(text))

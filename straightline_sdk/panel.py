"""The live notebook panel of a deployment (ipywidgets 8).

What it shows: the deployment's name; where requests go now and why (the
latest placement decision's reasons); one row per allowed target (state,
calls, errors, failures, p50/p95 latency, bytes); the thresholds F and D in
force; the last calls; a chart of where recent calls went, per target over
time. Controls: pin a target or return to automatic placement; undeploy.

Updates: the deployment's telemetry calls ``_on_call`` after every call, on the
calling thread (also map's and submit's threads), so it only raises a flag. One
daemon thread per panel redraws at most ``MAX_REDRAWS_PER_S`` times a second,
and only when something changed; widget values that did not change are not
sent, so the front end is not flooded and keeps updating while the kernel runs
other cells. The thread ends when the deployment is undeployed or the widget
is closed.

This module is imported only when a panel is first shown: ``import
straightline_sdk`` does no front-end work.
"""

from __future__ import annotations

import html
import logging
import threading
import time

import ipywidgets as widgets

from . import panel_parts
from .errors import PlacementError
from .placement import human_bytes, human_rate

log = logging.getLogger("straightline")

MAX_REDRAWS_PER_S = 4
#: how often an idle panel looks whether its deployment was undeployed elsewhere
IDLE_CHECK_S = 1.0
LAST_CALLS_SHOWN = 8
CHART_BUCKETS = 30
#: the chart covers the calls of the last ``CHART_MAX_WINDOW_S`` at most, and
#: at least ``CHART_MIN_WINDOW_S`` so a short burst is not stretched across it
CHART_MIN_WINDOW_S = 10.0
CHART_MAX_WINDOW_S = 120.0

AUTOMATIC = "automatic"
COLORS = {"local": "#4c78a8", "docker": "#f58518", "lambda": "#e45756", "ray": "#54a24b"}
STATE_COLORS = {"warm": "#2e7d32", "cold": "#1565c0", "down": "#c62828", "not deployed": "#757575",
                "undeployed": "#757575"}
# describe() fields never shown, whatever a target puts there
_SECRET_WORDS = ("token", "secret", "password", "credential", "key")

_CELL = "padding:2px 8px;text-align:left;white-space:nowrap"
_NUM = "padding:2px 8px;text-align:right;white-space:nowrap"
_SECTION = "margin:6px 0 2px 0;font-weight:600"
_MUTED = "color:#757575"


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _ms(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


class Panel:
    """A deployment's live panel; ``Panel(h).widget`` is what a notebook shows."""

    def __init__(self, deployment):
        self.dep = deployment
        self.title = widgets.HTML()
        self.placement = widgets.HTML()
        self.targets = widgets.HTML()
        self.thresholds = widgets.HTML()
        self.chart = widgets.HTML()
        self.shares = widgets.HTML()
        self.decision_space = widgets.HTML()
        self.failed_calls = widgets.HTML()
        self.last_calls = widgets.HTML()
        self.status = widgets.HTML()
        self.whatif = widgets.HTML()      # the latest straightline.whatif(h, ...), when one was run
        self.pin = widgets.Dropdown(
            options=[("automatic placement", AUTOMATIC)] + [(f"pin to {k}", k) for k in deployment.allowed],
            value=deployment.pinned or AUTOMATIC, description="Placement:",
            layout=widgets.Layout(width="260px"), style={"description_width": "initial"})
        self.undeploy_button = widgets.Button(description="Undeploy", button_style="danger",
                                              icon="trash", tooltip="tear down every target of this deployment")
        self.pin.observe(self._on_pin, names="value")
        self.undeploy_button.on_click(self._on_undeploy)
        controls = widgets.HBox([self.pin, self.undeploy_button, self.status],
                                layout=widgets.Layout(align_items="center"))
        self.widget = widgets.VBox(
            [self.title, self.shares, self.placement, self.targets, self.thresholds,
             self.decision_space, self.chart, self.failed_calls, self.last_calls, self.whatif,
             controls],
            layout=widgets.Layout(border="1px solid #d0d0d0", padding="6px 10px", max_width="900px"))
        self.widget.add_class("straightline-panel")

        self.refresh_count = 0
        self._drawn = threading.Condition()
        self._refresh_lock = threading.Lock()
        self._syncing_pin = False
        self._dirty = False
        self._wake = threading.Event()
        self._stopped = False
        self._failed_refreshes = 0

        self.refresh()
        deployment.telemetry.subscribe(self._on_call)
        self._thread = threading.Thread(target=self._run, name=f"straightline-panel-{deployment.name}",
                                        daemon=True)
        self._thread.start()

    def show_whatif(self, result) -> None:
        """Show a what-if result (predicted p95 and cost per policy) under the live view."""
        self.whatif.value = (f'<div style="{_SECTION}">What if (predicted, {_esc(result.setup.name)} '
                             f'preset, {len(result.traffic)} requests)</div>' + result.chart_svg())

    # -- updates ---------------------------------------------------------------

    def _on_call(self, record) -> None:
        """Called after every call, on the caller's thread: must stay cheap."""
        if not self._dirty:
            self._dirty = True
            self._wake.set()

    def _run(self) -> None:
        interval = 1.0 / MAX_REDRAWS_PER_S
        while not self._stopped:
            self._wake.wait(IDLE_CHECK_S)
            if self._closed_deployment() or self.widget.comm is None:  # undeployed, or widget closed
                break
            if not self._dirty and self.pin.value == (self.dep.pinned or AUTOMATIC):
                continue  # nothing new (h.pin() in code changes no telemetry: compare it here)
            # clear before reading the telemetry: a call recorded from now on sets it again
            self._wake.clear()
            self._dirty = False
            self.refresh()
            time.sleep(interval)
        self.stop()

    def _closed_deployment(self) -> bool:
        if self.dep.closed:
            self.refresh()  # show "undeployed" once
            return True
        return False

    def stop(self) -> None:
        """Stop live updates (the panel keeps its last values)."""
        self._stopped = True
        self._wake.set()
        self.dep.telemetry.unsubscribe(self._on_call)

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Wait, at most ``timeout`` seconds, until ``predicate()`` holds after a
        redraw; returns whether it did. For tests and scripts that drive a panel."""
        deadline = time.monotonic() + timeout
        with self._drawn:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._drawn.wait(left)
        return True

    def refresh(self) -> None:
        """Redraw every part from the deployment's current state."""
        with self._refresh_lock:
            try:
                self._draw()
                self._failed_refreshes = 0
            except Exception as exc:  # a panel must never break the deployment it shows
                self._failed_refreshes += 1
                if self._failed_refreshes == 1:
                    log.warning("%s: the panel could not be redrawn: %s", self.dep.name, exc)
                self.status.value = f"<span style='color:#c62828'>panel: {_esc(exc)}</span>"
            self.refresh_count += 1
        with self._drawn:
            self._drawn.notify_all()

    # -- controls ------------------------------------------------------------------

    def _on_pin(self, change) -> None:
        if self._syncing_pin:
            return
        kind = None if change["new"] == AUTOMATIC else change["new"]
        try:
            self.dep.pin(kind)
            self.status.value = ""
        except Exception as exc:
            self.status.value = f"<span style='color:#c62828'>{_esc(exc)}</span>"
        self.refresh()

    def _on_undeploy(self, _button) -> None:
        self.undeploy_button.disabled = True
        self.undeploy_button.description = "Undeploying…"
        try:
            self.dep.undeploy()
        except Exception as exc:
            self.status.value = f"<span style='color:#c62828'>undeploy failed: {_esc(exc)}</span>"
            self.undeploy_button.disabled = False
            self.undeploy_button.description = "Undeploy"
            return
        self.refresh()
        self.stop()

    # -- drawing -------------------------------------------------------------------

    def _draw(self) -> None:
        dep = self.dep
        closed = dep.closed
        stats = dep.stats()
        records = dep.telemetry.recent()
        overview = dep.target_overview()
        values = {
            self.title: self._title_html(closed, stats),
            self.placement: self._placement_html(closed),
            self.targets: self._targets_html(overview, stats, closed),
            self.thresholds: self._thresholds_html(),
            self.chart: self._chart_html(records),
            self.shares: panel_parts.shares_html(stats),
            self.decision_space: panel_parts.decision_space_html(records, dep.thresholds),
            self.failed_calls: panel_parts.failed_calls_html(records),
            self.last_calls: self._last_calls_html(records[-LAST_CALLS_SHOWN:]),
        }
        token = dep.spec.token
        for w, value in values.items():
            if token and token in value:  # never show a deployment's secret, whatever a target says
                value = value.replace(token, "•••")
            value = dep.spec.secrets.redact(value)   # nor a value of deploy(secrets=[...])
            if w.value != value:  # unchanged values are not sent to the front end
                w.value = value
        wanted = dep.pinned or AUTOMATIC
        if self.pin.value != wanted:
            self._syncing_pin = True
            try:
                self.pin.value = wanted
            finally:
                self._syncing_pin = False
        if closed:
            self.pin.disabled = True
            self.undeploy_button.disabled = True
            self.undeploy_button.description = "Undeployed"

    def _title_html(self, closed: bool, stats: dict) -> str:
        calls = sum(s["calls"] for s in stats.values())
        if closed:
            where = "<span style='color:#c62828'>undeployed</span>"
        else:
            deployed = ", ".join(self.dep.deployed_targets) or "nothing deployed yet"
            where = f"deployed on {_esc(deployed)}"
        profile = f" · profile: {_esc(self.dep.profile)}" if self.dep.profile is not None else ""
        return (f"<div data-part='title'><span style='font-size:1.15em;font-weight:700'>"
                f"{_esc(self.dep.name)}</span> · {where} · "
                f"<span data-field='total-calls'>{calls}</span> calls"
                f"<span style='{_MUTED}'>{profile}</span></div>")

    def _placement_html(self, closed: bool) -> str:
        try:
            decision = self.dep.placement
        except PlacementError as exc:  # e.g. pinned to a target that is down
            return (f"<div data-part='placement'><div style='{_SECTION}'>Latest placement: "
                    f"<span data-field='target' style='color:#c62828'>no target</span></div>"
                    f"<ul data-field='reasons' style='margin:0 0 0 1.2em;padding:0'>"
                    f"<li>{_esc(exc)}</li></ul></div>")
        head = "Last placement" if closed else "Latest placement"
        reasons = "".join(f"<li>{_esc(r)}</li>" for r in decision.reasons)
        fell = " <span style='color:#c62828'>(fell back)</span>" if decision.fell_back else ""
        return (f"<div data-part='placement'><div style='{_SECTION}'>{head}: "
                f"<span data-field='target' style='color:{COLORS.get(decision.target, '#000')}'>"
                f"{_esc(decision.target)}</span>{fell} "
                f"<span style='{_MUTED};font-weight:400'>(case: {_esc(decision.branch)}, "
                f"f<sub>t</sub> = {_esc(human_rate(decision.rate))}, "
                f"r<sub>d</sub> = {_esc(human_bytes(decision.request_bytes))})</span></div>"
                f"<ul data-field='reasons' style='margin:0 0 0 1.2em;padding:0'>{reasons}</ul></div>")

    def _targets_html(self, overview: dict, stats: dict, closed: bool) -> str:
        head = ("<tr style='border-bottom:1px solid #d0d0d0'>"
                + "".join(f"<th style='{_CELL if i < 2 else _NUM}'>{h}</th>" for i, h in enumerate(
                    ("target", "state", "calls", "errors", "failures", "rejected", "p50", "p95", "sent",
                     "received")))
                + f"<th style='{_CELL}'>details</th></tr>")
        rows = []
        for kind, info in overview.items():
            st = stats.get(kind, {})
            state = "undeployed" if closed and info["state"] != "down" else info["state"]
            detail = info.get("reason") or self._describe(info)
            busy = ""
            if state in ("warm", "cold") and info.get("concurrency"):
                busy = f" ({info.get('in_flight', 0)}/{info['concurrency']} busy)"
            cells = [
                ("target", f"<span style='color:{COLORS.get(kind, '#000')}'>■</span> {_esc(kind)}", _CELL),
                ("state", f"<span style='color:{STATE_COLORS.get(state, '#000')}'>{_esc(state)}</span>"
                          f"<span style='{_MUTED}'>{_esc(busy)}</span>", _CELL),
                ("calls", str(st.get("calls", 0)), _NUM),
                ("errors", str(st.get("errors", 0)), _NUM),
                ("failures", str(st.get("failures", 0)), _NUM),
                ("rejected", str(st.get("rejected", 0)), _NUM),   # saturated: not run, placed again
                ("p50", _ms(st.get("p50_ms")), _NUM),
                ("p95", _ms(st.get("p95_ms")), _NUM),
                ("sent", human_bytes(st.get("bytes_sent", 0)), _NUM),
                ("received", human_bytes(st.get("bytes_received", 0)), _NUM),
                ("details", _esc(detail), _CELL + ";white-space:normal;max-width:360px;" + _MUTED),
            ]
            rows.append(f"<tr data-target='{_esc(kind)}'>" + "".join(
                f"<td data-field='{name}' style='{style}'>{text}</td>" for name, text, style in cells)
                + "</tr>")
        not_allowed = [k for k in COLORS if k not in overview]
        note = ""
        if not_allowed:
            note = (f"<div data-field='not-allowed' style='{_MUTED};font-size:0.9em'>not allowed here: "
                    f"{_esc(', '.join(not_allowed))} (allow them with deploy(targets=[...]))</div>")
        return (f"<div data-part='targets'><div style='{_SECTION}'>Targets</div>"
                f"<table style='border-collapse:collapse;font-size:0.92em'>{head}{''.join(rows)}</table>"
                f"{note}</div>")

    @staticmethod
    def _describe(info: dict) -> str:
        return panel_parts.human_details(info, skip={"state", "reason", "in_flight", "concurrency"},
                                         secret_words=_SECRET_WORDS)

    def _thresholds_html(self) -> str:
        th = self.dep.thresholds
        how = "calibrated" if th.calibrated else "not calibrated"
        return (f"<div data-part='thresholds'><div style='{_SECTION}'>Thresholds in force</div>"
                f"F = <span data-field='F'>{_esc(human_rate(th.rate))}</span> · "
                f"D = <span data-field='D'>{_esc(human_bytes(th.size))}</span> · "
                f"<span data-field='calibrated'>{how}</span>"
                f"<div data-field='basis' style='{_MUTED};font-size:0.9em'>{_esc(th.basis or 'configured')}</div></div>")

    def _chart_html(self, records: list) -> str:
        """Stacked bars: calls per target per time bucket, over the recent window."""
        now = time.time()
        kept = [r for r in records if r.outcome != "failed" and now - r.time <= CHART_MAX_WINDOW_S]
        oldest = min((r.time for r in kept), default=now)
        window = min(CHART_MAX_WINDOW_S, max(CHART_MIN_WINDOW_S, now - oldest))
        step = window / CHART_BUCKETS
        start = now - window
        buckets: list[dict[str, int]] = [{} for _ in range(CHART_BUCKETS)]
        totals: dict[str, int] = {}
        for r in kept:
            i = min(CHART_BUCKETS - 1, int((r.time - start) / step)) if r.time >= start else None
            if i is None:
                continue
            buckets[i][r.target] = buckets[i].get(r.target, 0) + r.items
            totals[r.target] = totals.get(r.target, 0) + r.items
        width, height, bar_w = 420, 70, 420 / CHART_BUCKETS
        peak = max((sum(b.values()) for b in buckets), default=0) or 1
        bars = []
        for i, bucket in enumerate(buckets):
            y = height
            for kind in sorted(bucket, key=lambda k: list(COLORS).index(k) if k in COLORS else 99):
                h = bucket[kind] / peak * (height - 4)
                y -= h
                bars.append(f"<rect x='{i * bar_w + 1:.1f}' y='{y:.1f}' width='{bar_w - 2:.1f}' "
                            f"height='{h:.1f}' fill='{COLORS.get(kind, '#999')}'>"
                            f"<title>{_esc(kind)}: {bucket[kind]}</title></rect>")
        legend = " ".join(
            f"<span data-target='{_esc(k)}' data-calls='{n}' style='margin-right:10px'>"
            f"<span style='color:{COLORS.get(k, '#999')}'>■</span> {_esc(k)} {n}</span>"
            for k, n in sorted(totals.items()))
        svg = (f"<svg width='{width}' height='{height + 14}' role='img' "
               f"aria-label='calls per target over the last {window:.0f} s'>"
               f"<line x1='0' y1='{height}' x2='{width}' y2='{height}' stroke='#bbb'/>{''.join(bars)}"
               f"<text x='0' y='{height + 12}' font-size='10' fill='#757575'>−{window:.0f} s</text>"
               f"<text x='{width}' y='{height + 12}' font-size='10' fill='#757575' "
               f"text-anchor='end'>now</text>"
               f"<text x='2' y='10' font-size='10' fill='#757575'>{peak} calls / {step:.2g} s</text></svg>")
        return (f"<div data-part='chart'><div style='{_SECTION}'>Where recent calls went</div>{svg}"
                f"<div data-field='legend' style='font-size:0.9em'>{legend or 'no calls yet'}</div></div>")

    @staticmethod
    def _breakdown_cells(r) -> list:
        """Where a request's time went (see panel_parts.time_breakdown)."""
        if r.outcome == "failed":
            return [(name, "–", _NUM) for name in ("function", "queued", "transport")]
        parts = panel_parts.time_breakdown(r)
        return [("function", _ms(parts["function_s"] * 1000), _NUM),
                ("queued", _ms(parts["queue_s"] * 1000), _NUM),
                ("transport", _ms(parts["transport_s"] * 1000), _NUM)]

    def _last_calls_html(self, records: list) -> str:
        if not records:
            return (f"<div data-part='last-calls'><div style='{_SECTION}'>Last calls</div>"
                    f"<span style='{_MUTED}'>none yet</span></div>")
        head = "".join(f"<th style='{_CELL if i < 2 else _NUM}'>{h}</th>" for i, h in enumerate(
            ("time", "target", "items", "size", "latency", "in function", "queued", "transport",
             "outcome")))
        rows = []
        for r in reversed(records):
            outcome = r.outcome + (" (cold)" if r.cold else "") + (" (fell back)" if r.fell_back else "")
            color = {"ok": "#2e7d32", "error": "#ef6c00", "failed": "#c62828",
                     "rejected": "#757575"}.get(r.outcome, "#000")
            title = f" title='{_esc(r.detail)}'" if r.detail else ""
            cells = [
                ("time", time.strftime("%H:%M:%S", time.localtime(r.time)) + f".{int(r.time * 1000) % 1000:03d}", _CELL),
                ("target", _esc(r.target), _CELL),
                ("items", str(r.items), _NUM),
                ("size", human_bytes(r.request_bytes), _NUM),
                ("latency", _ms(r.latency_s * 1000) if r.outcome not in ("failed", "rejected") else "–",
                 _NUM),
                *self._breakdown_cells(r),
                ("outcome", f"<span style='color:{color}'{title}>{_esc(outcome)}</span>", _NUM),
            ]
            rows.append("<tr data-call>" + "".join(
                f"<td data-field='{n}' style='{s}'>{t}</td>" for n, t, s in cells) + "</tr>")
        return (f"<div data-part='last-calls'><div style='{_SECTION}'>Last calls</div>"
                f"<table style='border-collapse:collapse;font-size:0.92em'><tr>{head}</tr>{''.join(rows)}"
                f"</table></div>")

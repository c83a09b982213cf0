"""The notebook panel: the values it shows after a known sequence of calls on a
real local worker, live updates from map's and submit's threads, its controls,
and what it must never show. The panel's HTML is parsed back into the values a
person sees (row cells, counts, thresholds, last calls)."""

from __future__ import annotations

import subprocess
import sys
import threading
from html.parser import HTMLParser

import pytest

import straightline_sdk as straightline
from straightline_sdk.placement import human_bytes

WAIT_S = 15.0


class _Fields(HTMLParser):
    """Collects the text of every element carrying data-field, grouped by the
    nearest enclosing data-target row (or data-call row, or none)."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.calls: list[dict[str, str]] = []
        self.fields: dict[str, str] = {}
        self.legend: dict[str, int] = {}
        self._stack: list[tuple[str, dict]] = []   # (tag, attrs) of open elements
        self._open_fields: list[list] = []         # [name, depth, texts]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-target" in attrs:
            self.rows[attrs["data-target"]] = {}
        if tag == "tr" and "data-call" in attrs:
            self.calls.append({})
        if "data-calls" in attrs:
            self.legend[attrs["data-target"]] = int(attrs["data-calls"])
        self._stack.append((tag, attrs))
        if "data-field" in attrs:
            self._open_fields.append([attrs["data-field"], len(self._stack), [], self._row()])

    def _row(self):
        for tag, attrs in reversed(self._stack):
            if tag == "tr" and "data-target" in attrs:
                return self.rows[attrs["data-target"]]
            if tag == "tr" and "data-call" in attrs:
                return self.calls[-1]
        return self.fields

    def handle_endtag(self, tag):
        while self._open_fields and self._open_fields[-1][1] == len(self._stack):
            name, _, texts, into = self._open_fields.pop()
            into[name] = "".join(texts).strip()
        if self._stack:
            self._stack.pop()

    def handle_data(self, data):
        for field in self._open_fields:
            field[2].append(data)


def shown(panel) -> _Fields:
    """What the panel shows now, parsed from its widgets' values."""
    parser = _Fields()
    for w in (panel.title, panel.shares, panel.placement, panel.targets, panel.thresholds,
              panel.decision_space, panel.chart, panel.failed_calls, panel.last_calls):
        parser.feed(w.value)
    return parser


def all_widget_text(widget) -> str:
    """Every string value in a widget tree (what the front end receives)."""
    parts = []
    for name in widget.keys:
        value = getattr(widget, name)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, (tuple, list)):
            for item in value:
                if hasattr(item, "keys") and hasattr(item, "comm"):
                    parts.append(all_widget_text(item))
                else:
                    parts.append(repr(item))
    return "\n".join(parts)


def panel_of(h):
    h.panel  # builds it
    return h._panel


def deploy_square(**options):
    @straightline.deploy(sample=(3,), targets=["local"], **options)
    def square(x):
        if x < 0:
            raise ValueError(f"negative input {x}")
        return x * x
    return square


# -- what it shows ----------------------------------------------------------------

def test_panel_shows_rows_counts_thresholds_and_last_calls_after_known_calls():
    h = deploy_square()
    panel = panel_of(h)
    assert [h(i) for i in range(5)] == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError):
        h(-1)

    assert panel.wait_for(lambda: shown(panel).rows["local"].get("calls") == "6", WAIT_S), \
        shown(panel).rows
    view = shown(panel)
    row = view.rows["local"]
    stats = h.stats()["local"]
    assert row["state"].startswith("warm")
    assert row["errors"] == "1" and row["failures"] == "0"
    assert row["p50"].endswith("ms") and row["p95"].endswith("ms")
    assert row["sent"] == human_bytes(stats["bytes_sent"])
    assert row["received"] == human_bytes(stats["bytes_received"])
    assert view.fields["total-calls"] == "6"
    assert view.fields["target"] == "local"
    # five calls in a burst read as frequent: the paper sends them to serverless,
    # which is not allowed here, so they stay local
    assert view.fields["reasons"].endswith("→ local")
    assert (view.fields["F"], view.fields["D"], view.fields["calibrated"]) == \
        ("20 req/s", "4 MB", "not calibrated")
    assert view.legend == {"local": 6}
    # newest first: the failing call, then 4, 3, 2, 1, 0
    assert [c["outcome"] for c in view.calls] == ["error"] + ["ok"] * 4 + ["ok (cold)"]
    assert {c["target"] for c in view.calls} == {"local"}
    assert all(c["items"] == "1" and c["latency"].endswith("ms") for c in view.calls)
    assert view.calls[0]["size"] == human_bytes(h.calls[-1].request_bytes)
    assert "not-allowed" in view.fields and "docker" in view.fields["not-allowed"]


class _Plot(HTMLParser):
    """The decision-space plot, the shares and the failed calls, parsed back."""

    def __init__(self):
        super().__init__()
        self.lines: dict[str, float] = {}
        self.points: list[dict] = []
        self.regions: list[str] = []
        self.shares: dict[str, tuple[int, float]] = {}
        self.failed: list[dict] = []
        self._field = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-line" in attrs:
            self.lines[attrs["data-line"]] = float(attrs["data-value"])
        if "data-point" in attrs:
            self.points.append({"target": attrs["data-target"], "rate": float(attrs["data-rate"]),
                                "size": float(attrs["data-size"]),
                                "fell_back": attrs["data-fell-back"] == "1",
                                "outcome": attrs["data-outcome"]})
        if "data-region" in attrs:
            self.regions.append(attrs["data-region"])
        if "data-share" in attrs:
            self.shares[attrs["data-share"]] = (int(attrs["data-share-calls"]),
                                                float(attrs["data-percent"]))
        if "data-failed" in attrs:
            self.failed.append({"target": attrs["data-target"], "outcome": attrs["data-outcome"]})
        if attrs.get("data-field") in ("error-type", "error-message") and self.failed:
            self._field = attrs["data-field"]
            self.failed[-1][self._field] = ""

    def handle_endtag(self, tag):
        self._field = None

    def handle_data(self, data):
        if self._field:
            self.failed[-1][self._field] += data


def plot_of(panel) -> _Plot:
    parser = _Plot()
    for w in (panel.shares, panel.decision_space, panel.failed_calls):
        parser.feed(w.value)
    return parser


def test_the_decision_space_shows_f_and_d_each_call_and_the_failed_call():
    h = deploy_square()
    panel = panel_of(h)
    for i in range(5):
        h(i)
    with pytest.raises(ValueError):
        h(-1)
    assert panel.wait_for(lambda: len(plot_of(panel).points) == 6, WAIT_S), panel.decision_space.value
    plot = plot_of(panel)
    assert plot.lines == {"F": 20.0, "D": 4 * 1024 * 1024}
    assert set(plot.regions) == {"large", "moderate", "frequent-small"}
    records = h.calls
    assert [p["target"] for p in plot.points] == ["local"] * 6
    assert [p["size"] for p in plot.points] == [float(max(16, r.request_bytes)) for r in records]
    assert [p["rate"] for p in plot.points] == [pytest.approx(max(0.01, r.rate), rel=1e-5) for r in records]
    assert [p["outcome"] for p in plot.points] == ["ok"] * 5 + ["error"]
    assert plot.shares == {"local": (6, 100.0)}
    assert plot.failed == [{"target": "local", "outcome": "error", "error-type": "ValueError",
                            "error-message": "negative input -1"}]
    # the per-call time breakdown: in the function (measured there), queued, transport
    newest = shown(panel).calls[0]
    assert all(newest[k].endswith("ms") for k in ("function", "queued", "transport"))
    assert 0 < records[-1].function_s <= records[-1].latency_s


def test_shares_count_every_call_and_fallbacks_are_marked():
    """250 calls locally and 58 on Docker, the last one on Docker: the panel says
    so, instead of only where the last call went."""
    h = deploy_square()
    panel = panel_of(h)
    t = h.telemetry
    for _ in range(25):   # as a map's chunks of 10
        t.record("local", branch="moderate", items=10, request_bytes=400, response_bytes=400,
                 latency_s=0.01, rate=5.0)
    for _ in range(57):
        t.record("docker", branch="large", request_bytes=8 << 20, response_bytes=100, latency_s=0.05,
                 rate=1.0)
    t.record("docker", branch="moderate", fell_back=True, request_bytes=1000, response_bytes=100,
             latency_s=0.05, rate=50.0)
    t.record("lambda", branch="frequent-small", request_bytes=1000, outcome="failed",
             detail="TargetFailure: throttled", rate=50.0)
    panel.refresh()
    plot = plot_of(panel)
    assert plot.shares["local"] == (250, pytest.approx(250 / 308 * 100, abs=0.05))
    assert plot.shares["docker"] == (58, pytest.approx(58 / 308 * 100, abs=0.05))
    assert [p for p in plot.points if p["fell_back"]] == [
        {"target": "docker", "rate": 50.0, "size": 1000.0, "fell_back": True, "outcome": "ok"}]
    assert plot.failed[0] == {"target": "lambda", "outcome": "failed", "error-type": "TargetFailure",
                              "error-message": "throttled"}
    assert "data-outcome='failed'" in panel.decision_space.value   # drawn as a cross


def test_target_details_are_written_for_people():
    from straightline_sdk.panel import Panel
    text = Panel._describe({"image": "straightline/sq:abc", "reused_container": False,
                            "built": ["straightline-deps:1f2e", "straightline/sq:abc"],
                            "memory_mb": 3072, "timeout_s": 30, "concurrency": 4,
                            "state": "warm", "token": "s3cret"})
    assert text == ("image straightline/sq:abc, new container, built straightline-deps:1f2e, "
                    "sq:abc, 3 GB memory, timeout 30 s")
    assert "container reused" in Panel._describe({"reused_container": True})
    assert "[" not in text and "False" not in text


def test_updates_made_from_map_and_submit_threads_are_drawn_by_the_panel_thread():
    h = deploy_square()
    panel = panel_of(h)
    drawn_on: list[str] = []
    draw = panel._draw

    def recording_draw():
        drawn_on.append(threading.current_thread().name)
        draw()

    panel._draw = recording_draw
    assert h.map(range(40), chunksize=4) == [i * i for i in range(40)]
    futures = [h.submit(i) for i in range(10)]
    assert [f.result(timeout=WAIT_S) for f in futures] == [i * i for i in range(10)]

    assert panel.wait_for(lambda: shown(panel).rows["local"].get("calls") == "50", WAIT_S), \
        shown(panel).rows
    view = shown(panel)
    assert view.legend == {"local": 50}
    assert view.fields["total-calls"] == "50"
    # the last calls: submit's single calls are the newest, map's chunks of 4 before them
    items = [c["items"] for c in view.calls]
    assert "1" in items and set(items) <= {"1", "4"}
    # calls from the map's and submit's threads only raise a flag: every redraw
    # happened on the panel's own thread
    assert drawn_on and set(drawn_on) == {panel._thread.name}


def test_a_target_row_shows_each_allowed_target_with_its_state_and_reason():
    @straightline.deploy(sample=(2,), targets=["local", "ray"])
    def double(x):
        return 2 * x

    panel = panel_of(double)
    assert double(4) == 8
    assert panel.wait_for(lambda: shown(panel).rows["local"].get("calls") == "1", WAIT_S)
    view = shown(panel)
    overview = double.target_overview()
    assert set(view.rows) == {"local", "ray"}
    for kind, info in overview.items():
        assert view.rows[kind]["state"].startswith(info["state"])
        if info["reason"]:
            assert view.rows[kind]["details"] == info["reason"]
    assert view.fields["not-allowed"].startswith("not allowed here: docker, lambda")


def test_a_placement_no_target_can_take_is_shown_with_its_reason():
    # an unknown architecture makes the lambda target unavailable on any machine
    straightline.configure(options={"lambda": {"architecture": "sparc"}})

    @straightline.deploy(sample=(2,), targets=["local", "lambda"])
    def triple(x):
        return 3 * x

    panel = panel_of(triple)
    panel.pin.value = "lambda"
    view = shown(panel)
    assert view.fields["target"] == "no target"
    assert view.fields["reasons"].startswith("no allowed target can take this request (lambda:")
    assert view.rows["lambda"]["state"] == "down" and view.rows["lambda"]["details"]
    with pytest.raises(straightline.PlacementError):
        triple(1)


# -- controls ------------------------------------------------------------------------

def test_the_placement_control_pins_a_target_and_returns_to_automatic():
    h = deploy_square()
    panel = panel_of(h)
    panel.pin.value = "local"
    assert h.pinned == "local"
    assert h(2) == 4
    assert h.calls[-1].branch == "pinned"
    assert panel.wait_for(lambda: "pinned to local" in shown(panel).fields.get("reasons", ""), WAIT_S)

    panel.pin.value = "automatic"
    assert h.pinned is None
    assert h(3) == 9
    assert h.calls[-1].branch != "pinned"

    h.pin("local")  # pinned in code: the control follows without a call
    assert panel.wait_for(lambda: panel.pin.value == "local", WAIT_S)


def test_the_undeploy_button_tears_down_and_stops_live_updates():
    h = deploy_square()
    panel = panel_of(h)
    assert h(2) == 4
    worker = h.deployed_targets["local"].proc
    panel.undeploy_button.click()
    assert worker.wait(timeout=WAIT_S) is not None
    assert "undeployed" in repr(h)
    panel._thread.join(WAIT_S)
    assert not panel._thread.is_alive()
    assert "undeployed" in panel.title.value
    assert panel.undeploy_button.disabled and panel.pin.disabled
    assert panel._on_call not in h.telemetry._listeners


def test_undeploying_in_code_stops_the_panel_thread():
    h = deploy_square()
    panel = panel_of(h)
    h.undeploy()
    panel._thread.join(WAIT_S)
    assert not panel._thread.is_alive()
    assert "undeployed" in panel.title.value


# -- what it must not do ---------------------------------------------------------------

def test_the_panel_and_the_text_views_never_show_the_token():
    h = deploy_square()
    panel = panel_of(h)
    h(1)
    assert panel.wait_for(lambda: shown(panel).rows["local"].get("calls") == "1", WAIT_S)
    token = h.spec.token
    assert len(token) >= 32
    assert token not in all_widget_text(panel.widget)
    assert token not in repr(h) and token not in str(h) and token not in str(h.placement)


def test_importing_the_sdk_does_no_front_end_work():
    code = ("import sys, straightline_sdk; "
            "print(sorted(m for m in ('ipywidgets', 'IPython', 'straightline_sdk.panel') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert out.strip() == "[]"

"""What every benchmark shares: options, statistics, the machine, tables, JSON
and a chart under bench/results/, and finding out whether a target can be
measured here (a column that cannot is skipped with the reason, never faked).

The scripts import it as ``import common``: Python puts a script's own folder on
``sys.path``. No file here may be named like a package the scripts import (ray,
docker, ...), which is why the targets' own benchmarks are ``*_target.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
ROOT = os.path.dirname(BENCH_DIR)
# the scripts run from a plain clone too: the SDK (and tests/support) from this checkout
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)

from straightline_sdk.whatif.engine import percentile as _percentile_of_sorted  # noqa: E402


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(doc.strip().splitlines()[1:]))
    p.add_argument("--quick", action="store_true", help="fewer samples: a run of seconds to a minute")
    p.add_argument("--dry-run", action="store_true",
                   help="check the script end to end: local target only, a handful of calls "
                        "(what tests/test_bench_smoke.py runs); numbers are meaningless")
    p.add_argument("--out", default=RESULTS_DIR, help="folder for the JSON and the chart")
    return p


# -- statistics -------------------------------------------------------------------

def percentile(values, q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; nan for no values (the
    simulator's own definition, so a bench and a what-if report agree)."""
    return _percentile_of_sorted(sorted(values), q)


def median(values) -> float:
    return statistics.median(values) if values else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


# -- the machine ------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory_gib = round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": memory_gib,
            "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_at_start": load,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


# -- targets: can this column be measured here? -------------------------------------

def target_ready(kind: str, options: dict | None = None) -> tuple[bool, str]:
    """Whether the SDK's ``kind`` target exists in this tree and its probe says it is usable."""
    from straightline_sdk import targets
    try:
        cls = targets.target_class(kind)
    except Exception as exc:  # the module exists but does not import
        return False, f"straightline_sdk's {kind} target does not import: {exc}"
    if cls is None:
        module = targets.REGISTRY.get(kind, "?").partition(":")[0]
        return False, f"the {kind} target is not in this tree yet ({module.replace('.', '/')}.py missing)"
    probe = targets.probe(kind, options or {}, fresh=True)
    if not probe.available:
        return False, f"{kind} probe: {probe.reason}" + (f" ({probe.hint})" if probe.hint else "")
    return True, ""


def docker_engine() -> tuple[bool, str]:
    try:
        out = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"no Docker engine ({exc}); run scripts/setup-docker.sh"
    if out.returncode != 0:
        return False, f"the Docker engine does not answer ({out.stderr.strip()[:200]}); run scripts/setup-docker.sh"
    return True, ""


@contextlib.contextmanager
def moto_lambda():
    """A moto server (the Lambda API over real HTTP, invocations in containers), with
    this process's AWS environment pointed at it. Yields (server, "") or (None, why not)."""
    try:
        from tests.support import moto_lambda as support
    except ImportError as exc:
        yield None, f"tests/support/moto_lambda.py does not import: {exc}"
        return
    if not support.moto_installed():
        yield None, "moto is not installed (pip install 'moto[server,awslambda]')"
        return
    ok, why = support.docker_images_present()
    if not ok:
        yield None, why
        return
    server = support.MotoServer()
    try:
        server.start()
    except RuntimeError as exc:
        yield None, f"moto server did not start: {exc}"
        return
    saved = {k: os.environ.get(k) for k in (
        "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "NO_PROXY", "no_proxy")}
    os.environ.update({"AWS_ENDPOINT_URL": server.url, "AWS_REGION": "us-east-1",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"})
    os.environ.pop("AWS_PROFILE", None)
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))
    try:
        yield server, ""
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the report -------------------------------------------------------------------------

@dataclass
class Report:
    name: str
    title: str
    args: dict
    rows: list = field(default_factory=list)          # dicts
    skipped: dict = field(default_factory=dict)       # column -> why
    goals: list = field(default_factory=list)         # dicts: goal, met, detail
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def skip(self, column: str, why: str) -> None:
        self.skipped[column] = why
        print(f"  skipped {column}: {why}", flush=True)

    def goal(self, text: str, met: bool | None, detail: str) -> None:
        self.goals.append({"goal": text, "met": met, "detail": detail})

    def table(self, columns: list[tuple[str, str]], rows=None) -> str:
        """columns: (key, heading). Returns the table as text."""
        rows = self.rows if rows is None else rows
        cells = [[heading for _, heading in columns]]
        for row in rows:
            cells.append([fmt(row.get(key)) for key, _ in columns])
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        # text columns align left, numbers right
        text = [all(isinstance(row.get(key), str) for row in rows) for key, _ in columns]
        lines = []
        for n, r in enumerate(cells):
            lines.append("  ".join(c.ljust(w) if text[i] else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def print_footer(self) -> None:
        if self.skipped:
            print("\nSkipped columns:")
            for column, why in self.skipped.items():
                print(f"  {column}: {why}")
        if self.goals:
            print("\nGoals:")
            for g in self.goals:
                mark = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[g["met"]]
                print(f"  [{mark}] {g['goal']}: {g['detail']}")
        for note in self.notes:
            print(f"\nNote: {note}")

    def finish(self, out_dir: str, chart: dict | None = None) -> list[str]:
        """Print the footer and save: every script's last step. A dry run says its
        numbers mean nothing, in the output and in the JSON."""
        if self.args.get("dry_run"):
            self.notes.append("dry run: numbers are meaningless")
        self.print_footer()
        return self.save(out_dir, chart)

    def save(self, out_dir: str, chart: dict | None = None) -> list[str]:
        """Write NAME.json (and NAME.png or NAME.svg when ``chart`` is given)."""
        os.makedirs(out_dir, exist_ok=True)
        data = {"benchmark": self.name, "title": self.title, "machine": machine(),
                "args": self.args, "rows": self.rows, "skipped": self.skipped,
                "goals": self.goals, "notes": self.notes, **self.extra}
        path = os.path.join(out_dir, f"{self.name}.json")
        with open(path, "w") as f:
            json.dump(data, f, indent=2, default=_json_default)
        written = [path]
        if chart:
            written.append(bar_chart(os.path.join(out_dir, self.name), title=self.title, **chart))
        print("\nwrote " + ", ".join(os.path.relpath(p) for p in written))
        return written


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


# -- charts ------------------------------------------------------------------------

def bar_chart(path_base: str, *, title: str, labels: list[str], values: list[float],
              unit: str, log: bool = False) -> str:
    """A horizontal bar chart: PNG with matplotlib if it is installed, else SVG written here."""
    pairs = [(l, v) for l, v in zip(labels, values) if v is not None and not math.isnan(v) and v > 0]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _svg_bar_chart(path_base + ".svg", title, pairs, unit, log)
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(pairs) + 1.2))
    ax.barh([l for l, _ in pairs][::-1], [v for _, v in pairs][::-1], color="#4C72B0")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(unit)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path_base + ".png", dpi=110)
    plt.close(fig)
    return path_base + ".png"


def _svg_bar_chart(path: str, title: str, pairs, unit: str, log: bool) -> str:
    from xml.sax.saxutils import escape
    label_w, bar_w, row_h, top = 260, 420, 22, 40
    height = top + row_h * len(pairs) + 40
    lo = min((v for _, v in pairs), default=1.0)
    hi = max((v for _, v in pairs), default=1.0)

    def scale(v: float) -> float:
        if log:
            floor = math.log10(lo) - 0.3
            return bar_w * (math.log10(v) - floor) / max(1e-9, math.log10(hi) - floor)
        return bar_w * v / hi if hi else 0.0

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 110}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i, (label, v) in enumerate(pairs):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(1.0, scale(v)):.1f}" height="{row_h - 6}" fill="#4C72B0"/>')
        out.append(f'<text x="{label_w + max(1.0, scale(v)) + 4:.1f}" y="{y + 15}">{escape(fmt(v))}</text>')
    out.append(f'<text x="{label_w}" y="{height - 12}">{escape(unit)}{" (log scale)" if log else ""}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path

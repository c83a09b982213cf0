"""What ``whatif`` returns: the results of every policy, as a table, a chart and
data, with the inputs kept so it can be run again with changes."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

from ..placement import human_bytes


def _ms(s: float) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    v = s * 1000
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"


def _usd(v: float) -> str:
    if v is None or math.isnan(v):
        return "-"
    if v == 0:
        return "0"
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"


@dataclass
class WhatIf:
    """Predicted response times, failures, tiers used and cost of each policy."""

    results: list                  # RunResult, in the order asked
    traffic: object                # Traffic
    setup: object                  # presets.Setup (the tiers as simulated)
    function: object               # FunctionModel
    inputs: dict = field(default_factory=dict)    # everything whatif() was called with
    tuned: object = None           # tune.Tuned, if a tuned policy was asked for
    elapsed_s: float = 0.0

    def __getitem__(self, label: str):
        for r in self.results:
            if r.label == label or r.label.split(" ")[0] == label:
                return r
        raise KeyError(f"no policy {label!r}; have {[r.label for r in self.results]}")

    def rerun(self, **changes) -> "WhatIf":
        """Run again with the same inputs, ``changes`` replacing some (e.g.
        ``preset="cloud"``, ``traffic=...``, ``tiers={"lambda": {"memory_mb": 1024}}``)."""
        from . import whatif
        return whatif(**{**self.inputs, **changes})

    def rows(self) -> list:
        out = []
        for r in self.results:
            d = r.to_dict()
            d["failed"] = ", ".join(f"{k} {v}" for k, v in sorted(r.failures.items())) or ""
            d["tiers"] = ", ".join(f"{k} {v}" for k, v in sorted(r.per_tier.items(), key=lambda kv: -kv[1]))
            out.append(d)
        return out

    def table(self) -> str:
        head = ("policy", "mean ms", "p50 ms", "p95 ms", "p99 ms", "failed", "$/M req", "requests per tier")
        cells = [head]
        for r in self.results:
            failed = ", ".join(f"{k} {v}" for k, v in sorted(r.failures.items())) or "0"
            tiers = ", ".join(f"{k} {v}" for k, v in sorted(r.per_tier.items(), key=lambda kv: -kv[1]))
            cells.append((r.label, _ms(r.mean_s), _ms(r.p50_s), _ms(r.p95_s), _ms(r.p99_s), failed,
                          _usd(r.usd_per_million), tiers))
        widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
        lines = []
        for n, row in enumerate(cells):
            lines.append("  ".join(c.ljust(w) if i in (0, 5, 7) else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def header(self) -> str:
        t = self.traffic
        sizes = sorted(t.sizes)
        f = self.function
        return (f"what-if: {len(t)} requests of {t.name} ({t.mean_rate:.3g} req/s over "
                f"{t.duration_s:.4g} s, median {human_bytes(sizes[len(sizes) // 2])}) on the "
                f"{self.setup.name} preset ({', '.join(self.setup.tiers)}); function "
                f"{f.runtime_s * 1000:.3g} ms at {human_bytes(f.reference_bytes)}")

    def notes(self) -> list:
        out = []
        for r in self.results:
            if r.policy.note:
                out.append(f"{r.label}: {r.policy.note}")
            th = r.policy.thresholds
            if th is not None:
                out.append(f"{r.label}: F = {th.rate:.4g} req/s, D = "
                           f"{'never' if th.size >= 1 << 40 else human_bytes(th.size)} ({th.basis})")
        out.append("predictions of a model (see setup.describe() for every parameter and its "
                   "source); this-machine figures were checked against real replays "
                   "(docs/whatif.md)")
        return out

    def __str__(self) -> str:
        return "\n".join([self.header(), "", self.table(), ""] + [f"- {n}" for n in self.notes()])

    def __repr__(self) -> str:
        return f"<WhatIf {self.traffic.name} on {self.setup.name}: {len(self.results)} policies>"

    def to_dict(self) -> dict:
        return {"traffic": self.traffic.name, "requests": len(self.traffic),
                "preset": self.setup.name, "rows": self.rows(), "notes": self.notes(),
                "tuned": self.tuned.explanation if self.tuned else None,
                "params": {name: {k: v for k, (v, _) in m.params().items()}
                           for name, m in self.setup.tiers.items()}}

    # -- in a notebook ------------------------------------------------------------------

    def chart_svg(self) -> str:
        """Predicted p95 (bars, log scale) and $ per million requests (figures) per policy."""
        rows = [r for r in self.results if r.p95_s == r.p95_s and r.p95_s > 0]
        label_w, bar_w, row_h, top = 190, 300, 22, 30
        height = top + row_h * len(rows) + 30
        if rows:
            lo = min(r.p95_s for r in rows)
            hi = max(r.p95_s for r in rows)
        else:
            lo = hi = 1.0
        floor = math.log10(lo) - 0.3

        def width(v: float) -> float:
            span = max(1e-9, math.log10(hi) - floor)
            return max(2.0, bar_w * (math.log10(v) - floor) / span)

        esc = html.escape
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 230}" '
               f'height="{height}" font-family="sans-serif" font-size="12">',
               f'<text x="{label_w}" y="18" font-weight="bold">predicted p95 (ms, log scale)</text>',
               f'<text x="{label_w + bar_w + 110}" y="18" font-weight="bold">$ / million</text>']
        for i, r in enumerate(rows):
            y = top + i * row_h
            color = "#9e9e9e" if r.policy.lower_bound else (
                "#4c78a8" if r.policy.kind == "straightline" else "#f58518")
            w = width(r.p95_s)
            fail = f" ({r.failed} failed)" if r.failed else ""
            out.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{esc(r.label)}</text>')
            out.append(f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{color}"/>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{esc(_ms(r.p95_s) + fail)}</text>')
            out.append(f'<text x="{label_w + bar_w + 110}" y="{y + 15}">{esc(_usd(r.usd_per_million))}</text>')
        out.append("</svg>")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = ("policy", "mean ms", "p50 ms", "p95 ms", "p99 ms", "failed", "$ / M req", "requests per tier")
        rows = []
        for r in self.results:
            failed = ", ".join(f"{k} {v}" for k, v in sorted(r.failures.items())) or "0"
            tiers = ", ".join(f"{k} {v}" for k, v in sorted(r.per_tier.items(), key=lambda kv: -kv[1]))
            cells = (r.label, _ms(r.mean_s), _ms(r.p50_s), _ms(r.p95_s), _ms(r.p99_s), failed,
                     _usd(r.usd_per_million), tiers)
            rows.append("<tr>" + "".join(f'<td style="padding:2px 8px">{esc(c)}</td>' for c in cells) + "</tr>")
        table = ("<table><tr>" + "".join(f'<th style="padding:2px 8px">{esc(h)}</th>' for h in head)
                 + "</tr>" + "".join(rows) + "</table>")
        notes = "".join(f"<li>{esc(n)}</li>" for n in self.notes())
        return (f"<div><p>{esc(self.header())}</p>{self.chart_svg()}{table}"
                f'<ul style="color:#616161">{notes}</ul></div>')

    @property
    def widget(self):
        """An ipywidgets view (the chart and the table), for the panel or a cell."""
        import ipywidgets as widgets
        return widgets.HTML(self._repr_html_())

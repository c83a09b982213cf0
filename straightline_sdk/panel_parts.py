"""Parts of the panel drawn as HTML strings from plain data, so they can be
tested without a front end: the paper's decision space, the share of calls per
target, the failed calls, and target details in words.

The decision space is the picture of the StraightLine paper (arXiv 2407.18148):
request rate f_t across, request size r_d up, both on log scales; the lines
f_t = F and r_d = D carve the plane into the policy's three cases (frequent and
small -> serverless, large -> Docker, otherwise the local server), and each
recent call is a dot coloured by the target that served it. A call that fell
back (the case's first choice was passed over) has a dark ring; one whose
target failed is a cross. Plain SVG: no plotting library in the kernel.
"""

from __future__ import annotations

import html
import math

from .placement import human_bytes, human_rate

COLORS = {"local": "#4c78a8", "docker": "#f58518", "lambda": "#e45756", "ray": "#54a24b"}
#: calls drawn in the decision space (the newest)
POINTS_SHOWN = 300
FAILED_SHOWN = 5
_MUTED = "color:#757575"
_SECTION = "margin:6px 0 2px 0;font-weight:600"

# plot geometry (px)
_W, _H = 460, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 24, 10, 34
#: rates below this are drawn at it (a first call has no measured rate yet)
_MIN_RATE = 0.01
_MIN_SIZE = 16


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and 0 < x < (1 << 40)


def _decade_span(values: list[float], floor: float) -> tuple[float, float]:
    """log10 bounds, whole decades, covering the values with a decade of margin."""
    logs = [math.log10(max(v, floor)) for v in values if v is not None]
    lo, hi = (min(logs), max(logs)) if logs else (0.0, 1.0)
    lo, hi = math.floor(lo) - 1, math.ceil(hi) + 1
    if hi - lo < 3:
        hi = lo + 3
    return float(lo), float(hi)


def decision_space(records: list, thresholds, limit: int = POINTS_SHOWN) -> dict:
    """The plot's data: axes (log10 bounds), the F and D lines, the points."""
    records = records[-limit:]
    points = []
    for r in records:
        size = r.request_bytes / max(1, r.items)
        points.append({"rate": max(getattr(r, "rate", 0.0) or 0.0, _MIN_RATE),
                       "size": max(size, _MIN_SIZE), "target": r.target,
                       "fell_back": bool(r.fell_back), "failed": r.outcome == "failed",
                       "outcome": r.outcome, "items": r.items})
    F = thresholds.rate if _finite_positive(thresholds.rate) else None
    D = thresholds.size if _finite_positive(thresholds.size) else None
    x_lo, x_hi = _decade_span([p["rate"] for p in points] + ([F] if F else [1.0]), _MIN_RATE)
    y_lo, y_hi = _decade_span([p["size"] for p in points] + ([D] if D else [1024.0]), _MIN_SIZE)
    return {"x": (x_lo, x_hi), "y": (y_lo, y_hi), "F": F, "D": D, "points": points}


def _size_ticks(lo: float, hi: float, most: int = 7) -> list[int]:
    """Sizes people read at a glance (16 B, 1 KB, 64 KB, 4 MB, ...) between
    10**lo and 10**hi bytes: powers of 4, thinned to at most ``most``."""
    ticks = [4 ** k for k in range(0, 24) if lo <= math.log10(4 ** k) <= hi]
    step = max(1, math.ceil(len(ticks) / most))
    # keep the ticks on whole powers of 1024 (1 KB, 1 MB) when thinning
    return [t for i, t in enumerate(ticks) if (round(math.log(t, 4)) % step) == 0] if step > 1 else ticks


def _rate_tick(exp: float) -> str:
    value = 10 ** exp
    return f"{value:g}"


def decision_space_html(records: list, thresholds) -> str:
    data = decision_space(records, thresholds)
    (x_lo, x_hi), (y_lo, y_hi) = data["x"], data["y"]
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(rate: float) -> float:
        return _LEFT + (math.log10(rate) - x_lo) / (x_hi - x_lo) * pw

    def py(size: float) -> float:
        return _TOP + ph - (math.log10(size) - y_lo) / (y_hi - y_lo) * ph

    F, D = data["F"], data["D"]
    fx = px(F) if F else _LEFT + pw     # no F: nothing counts as frequent
    dy = py(D) if D else _TOP           # no D: nothing counts as large
    parts = [f"<rect x='{_LEFT}' y='{_TOP}' width='{pw}' height='{ph}' fill='#fafafa' stroke='#ccc'/>"]
    # the three regions of the policy, tinted with the kind the case sends to first
    regions = [
        ("large", "Docker (large data)", _LEFT, _TOP, pw, max(0.0, dy - _TOP), COLORS["docker"]),
        ("moderate", "local (moderate)", _LEFT, dy, max(0.0, fx - _LEFT), _TOP + ph - dy, COLORS["local"]),
        ("frequent-small", "serverless (frequent, small)", fx, dy, max(0.0, _LEFT + pw - fx),
         _TOP + ph - dy, COLORS["lambda"]),
    ]
    for name, label, x, y, w, h, color in regions:
        if w < 1 or h < 1:
            continue
        parts.append(f"<rect data-region='{name}' x='{x:.1f}' y='{y:.1f}' width='{w:.1f}' "
                     f"height='{h:.1f}' fill='{color}' fill-opacity='0.08'/>")
        # the whole label where it fits, else its first word (about 5.5 px a character)
        shown = label if w >= len(label) * 5.5 + 8 else label.split(" ")[0]
        if w >= len(shown) * 5.5 + 8 and h > 14:
            parts.append(f"<text x='{x + 4:.1f}' y='{y + 12:.1f}' font-size='10' fill='{color}'>"
                         f"<title>{_esc(label)}</title>{_esc(shown)}</text>")
    # axes: a tick per decade
    for e in range(int(x_lo), int(x_hi) + 1):
        x = px(10 ** e)
        parts.append(f"<line x1='{x:.1f}' y1='{_TOP + ph}' x2='{x:.1f}' y2='{_TOP + ph + 4}' stroke='#999'/>"
                     f"<text x='{x:.1f}' y='{_TOP + ph + 14}' font-size='9' fill='#757575' "
                     f"text-anchor='middle'>{_esc(_rate_tick(e))}</text>")
    for size in _size_ticks(y_lo, y_hi):
        y = py(size)
        parts.append(f"<line x1='{_LEFT - 4}' y1='{y:.1f}' x2='{_LEFT}' y2='{y:.1f}' stroke='#999'/>"
                     f"<text x='{_LEFT - 6}' y='{y + 3:.1f}' font-size='9' fill='#757575' "
                     f"text-anchor='end'>{_esc(human_bytes(size))}</text>")
    parts.append(f"<text x='{_LEFT + pw / 2:.1f}' y='{_H - 4}' font-size='10' fill='#555' "
                 f"text-anchor='middle'>request rate f_t (req/s, log)</text>"
                 f"<text x='12' y='{_TOP + ph / 2:.1f}' font-size='10' fill='#555' text-anchor='middle' "
                 f"transform='rotate(-90 12 {_TOP + ph / 2:.1f})'>request size r_d (log)</text>")
    # the thresholds
    if F:
        parts.append(f"<line data-line='F' data-value='{F!r}' x1='{fx:.1f}' y1='{dy:.1f}' "
                     f"x2='{fx:.1f}' y2='{_TOP + ph}' stroke='#333' stroke-dasharray='4 3'>"
                     f"<title>F = {_esc(human_rate(F))}</title></line>"
                     f"<text x='{fx + 3:.1f}' y='{_TOP + ph - 4}' font-size='10' fill='#333'>"
                     f"F = {_esc(human_rate(F))}</text>")
    if D:
        parts.append(f"<line data-line='D' data-value='{D!r}' x1='{_LEFT}' y1='{dy:.1f}' "
                     f"x2='{_LEFT + pw}' y2='{dy:.1f}' stroke='#333' stroke-dasharray='4 3'>"
                     f"<title>D = {_esc(human_bytes(D))}</title></line>"
                     f"<text x='{_LEFT + pw - 4}' y='{dy - 4:.1f}' font-size='10' fill='#333' "
                     f"text-anchor='end'>D = {_esc(human_bytes(D))}</text>")
    # the calls, oldest first so the newest are on top
    for p in data["points"]:
        x, y = px(p["rate"]), py(p["size"])
        color = COLORS.get(p["target"], "#999")
        what = (f"{p['target']}: f_t = {human_rate(p['rate'])}, r_d = {human_bytes(p['size'])}, "
                f"{p['outcome']}" + (", fell back" if p["fell_back"] else ""))
        attrs = (f"data-point data-target='{_esc(p['target'])}' data-rate='{p['rate']:.6g}' "
                 f"data-size='{p['size']:.6g}' data-fell-back='{int(p['fell_back'])}' "
                 f"data-outcome='{_esc(p['outcome'])}'")
        if p["failed"]:
            parts.append(f"<g {attrs}><path d='M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}"
                         f"M{x - 4:.1f},{y + 4:.1f}L{x + 4:.1f},{y - 4:.1f}' stroke='{color}' "
                         f"stroke-width='2'/><title>{_esc(what)}</title></g>")
        else:
            ring = " stroke='#222' stroke-width='1.5'" if p["fell_back"] else " stroke='white' stroke-width='0.5'"
            parts.append(f"<circle {attrs} cx='{x:.1f}' cy='{y:.1f}' r='4' fill='{color}' "
                         f"fill-opacity='0.75'{ring}><title>{_esc(what)}</title></circle>")
    svg = (f"<svg width='{_W}' height='{_H}' role='img' data-plot='decision-space' "
           f"aria-label='decision space: request size against request rate, F and D, recent calls'>"
           f"{''.join(parts)}</svg>")
    kinds = sorted({p["target"] for p in data["points"]})
    legend = " ".join(f"<span style='margin-right:10px'><span style='color:{COLORS.get(k, '#999')}'>●"
                      f"</span> {_esc(k)}</span>" for k in kinds)
    note = ("<span style='margin-left:6px'>◯ ringed: fell back · ✕: target failed</span>"
            if data["points"] else "no calls yet")
    return (f"<div data-part='decision-space'><div style='{_SECTION}'>Decision space "
            f"<span style='{_MUTED};font-weight:400'>(the last {len(data['points'])} calls)</span></div>"
            f"{svg}<div style='font-size:0.9em;{_MUTED}'>{legend}{note}</div></div>")


def shares_html(stats: dict) -> str:
    """Where the calls ran: each target's share of all calls, as a bar and in words.
    A call whose target failed counts where it ran in the end, not twice."""
    calls = {kind: s.get("calls", 0) - s.get("failed_calls", 0) for kind, s in stats.items()}
    calls = {kind: n for kind, n in calls.items() if n > 0}
    total = sum(calls.values())
    if not total:
        return (f"<div data-part='shares'><div style='{_SECTION}'>Calls by target</div>"
                f"<span style='{_MUTED}'>no calls yet</span></div>")
    ordered = sorted(calls.items(), key=lambda kv: -kv[1])
    bar = "".join(f"<div title='{_esc(k)}: {n}' style='width:{100 * n / total:.2f}%;"
                  f"background:{COLORS.get(k, '#999')};height:10px'></div>" for k, n in ordered)
    words = " · ".join(
        f"<span data-share='{_esc(k)}' data-share-calls='{n}' data-percent='{100 * n / total:.1f}'>"
        f"<span style='color:{COLORS.get(k, '#999')}'>■</span> {_esc(k)} "
        f"{_percent(n, total)} ({n})</span>" for k, n in ordered)
    return (f"<div data-part='shares'><div style='{_SECTION}'>Calls by target "
            f"<span style='{_MUTED};font-weight:400'>({total} in all)</span></div>"
            f"<div style='display:flex;width:420px;border:1px solid #ddd'>{bar}</div>"
            f"<div style='font-size:0.92em'>{words}</div></div>")


def _percent(n: int, total: int) -> str:
    share = 100 * n / total
    return f"{share:.0f}%" if share >= 1 or share == 0 else "<1%"


def failed_calls_html(records: list, limit: int = FAILED_SHOWN) -> str:
    """The newest requests that raised (the function's error) or failed (the target's)."""
    bad = [r for r in records if r.outcome in ("error", "failed")][-limit:]
    if not bad:
        return ""
    import time
    rows = []
    for r in reversed(bad):
        kind, _, message = (r.detail or "").partition(": ")
        if not message:
            kind, message = ("", r.detail or "")
        who = "the function raised" if r.outcome == "error" else "the target failed"
        when = time.strftime("%H:%M:%S", time.localtime(r.time))
        rows.append(f"<li data-failed data-target='{_esc(r.target)}' data-outcome='{_esc(r.outcome)}'>"
                    f"<span style='{_MUTED}'>{when} {_esc(r.target)}, {who}:</span> "
                    f"<b data-field='error-type'>{_esc(kind)}</b> "
                    f"<span data-field='error-message'>{_esc(message)}</span></li>")
    return (f"<div data-part='failed-calls'><div style='{_SECTION};color:#c62828'>Failed calls</div>"
            f"<ul style='margin:0 0 0 1.2em;padding:0;font-size:0.92em'>{''.join(rows)}</ul></div>")


# -- target details, in words ---------------------------------------------------------

_WORDS = {
    "reused_container": ("container reused", "new container"),
    "uploaded": ("code uploaded", "code unchanged, not uploaded"),
}
_LABELS = {"content_hash": "content", "actor_pid": "actor pid", "cold_starts": "cold starts",
           "arn": "ARN"}


def human_details(info: dict, skip=(), secret_words=()) -> str:
    """A target's describe() as words: ``container reused, built app image, 256 MB memory``."""
    parts = []
    for key, value in info.items():
        if key in skip or value in (None, "", []) or any(w in key.lower() for w in secret_words):
            continue
        if key in _WORDS and isinstance(value, bool):
            parts.append(_WORDS[key][0 if value else 1])
        elif key == "built":
            names = [str(v).rsplit("/", 1)[-1] for v in (value if isinstance(value, list) else [value])]
            parts.append("built " + ", ".join(names))
        elif key.endswith("_mb") and isinstance(value, (int, float)):
            parts.append(f"{human_bytes(value * 1024 * 1024)} {key[:-3].replace('_', ' ')}")
        elif key.endswith("_bytes") and isinstance(value, (int, float)):
            parts.append(f"{key[:-6].replace('_', ' ')} {human_bytes(value)}")
        elif key.endswith("_s") and isinstance(value, (int, float)):
            parts.append(f"{key[:-2].replace('_', ' ')} {value:g} s")
        elif isinstance(value, bool):
            parts.append(key.replace("_", " ") if value else f"not {key.replace('_', ' ')}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{_LABELS.get(key, key.replace('_', ' '))} {', '.join(map(str, value))}")
        else:
            parts.append(f"{_LABELS.get(key, key.replace('_', ' '))} {value}")
    return ", ".join(parts)


def time_breakdown(record) -> dict:
    """Where a request's time went: in the function (measured on the far side),
    queued here for a free slot, and the rest (transport, serialization, the
    target's own overhead). Seconds."""
    function_s = min(getattr(record, "function_s", 0.0) or 0.0, record.latency_s)
    return {"function_s": function_s, "queue_s": getattr(record, "queue_s", 0.0) or 0.0,
            "transport_s": max(0.0, record.latency_s - function_s)}

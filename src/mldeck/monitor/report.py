"""A drift report as one self-contained HTML file: no script, no external file; the charts are
inline SVG, so it opens anywhere and can be mailed."""

from __future__ import annotations

import html
from typing import Any

from mldeck import formatting as fmt
from mldeck.monitor import drift
from mldeck.monitor.queries import ReportDetail, ReportRow

REFERENCE_COLOUR = "#6b7a90"
CURRENT_COLOUR = "#e07b39"
DRIFT_COLOUR = "#c0392b"
OK_COLOUR = "#2e7d32"
LABEL_CHARS = 24  # the most of a bar chart's end label shown (half its width)

GENERATOR = "mldeck drift report"  # what says a page is a report `drift report` may replace
# Reports written before the generator was named began so.
_EARLIER = b'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Drift report'


def is_report(head: bytes) -> bool:
    """Whether a file beginning with *head* (its first bytes) is a report written here."""
    mark = f'<meta name="generator" content="{GENERATOR}">'.encode()
    return mark in head or head.startswith(_EARLIER)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1d232b;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}
.sub{color:#5b6675;margin-top:0}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e7ec}
td:first-child,figcaption{overflow-wrap:anywhere}
th{background:#f4f6f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.drift{color:#c0392b;font-weight:600}.ok{color:#2e7d32}
.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #e3e7ec;border-radius:6px;padding:.6rem 1rem;min-width:12rem}
.card b{display:block;font-size:1.3rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:1rem}
figure{margin:0;border:1px solid #e3e7ec;border-radius:6px;padding:.5rem}
figcaption{font-size:.85rem;margin-bottom:.3rem}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;
vertical-align:middle}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _score(feature: dict[str, Any]) -> str:
    """What a feature's drift is judged on: a test's p-value, else the distance (the caption of
    its chart showed the test's statistic beside the p-value of the table)."""
    if feature.get("p_value") is not None:
        return f"p = {feature['p_value']:.3g}"
    return _fmt(feature.get("statistic"))


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cut(label: str, most: int = LABEL_CHARS) -> str:
    return label if len(label) <= most else label[: most - 1] + "…"


def bars_svg(labels: list[str], reference: list[float], current: list[float]) -> str:
    """Grouped bars: reference and batch share per bin or category."""
    width, height, pad = 320, 150, 22
    n = max(len(reference), 1)
    top = max([*reference, *current, 1e-9])
    slot = (width - 2 * pad) / n
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">']
    base = height - pad
    for i, (r, c) in enumerate(zip(reference, current, strict=True)):
        x = pad + i * slot
        for j, (value, colour) in enumerate(((r, REFERENCE_COLOUR), (c, CURRENT_COLOUR))):
            h = (height - 2 * pad) * value / top
            parts.append(
                f'<rect x="{x + j * slot / 2:.1f}" y="{base - h:.1f}" width="{slot / 2 - 0.5:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{_e(labels[i])}: '
                f"{'reference' if j == 0 else 'batch'} {value:.1%}</title></rect>"
            )
    parts.append(f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" stroke="#999"/>')
    if labels:
        # The first and last labels, each in half the width (long category names ran into each
        # other); the bars' tooltips keep them whole.
        parts.append(f'<text x="{pad}" y="{height - 6}" font-size="9">{_e(_cut(labels[0]))}</text>')
        parts.append(
            f'<text x="{width - pad}" y="{height - 6}" font-size="9" text-anchor="end">'
            f"{_e(_cut(labels[-1]))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def line_svg(
    series: dict[str, tuple[str, list[float | None]]],
    labels: list[str],
    markers: list[bool],
    band: tuple[list[float | None], list[float | None]] | None = None,
    threshold: float | None = None,
    empty: str = "Not enough batches yet.",
) -> str:
    """Lines over batches; a shaded band, a dashed threshold and red markers for alerts;
    *empty* said when there is nothing to draw."""
    width, height, pad = 900, 220, 36
    values = [v for _, vs in series.values() for v in vs if v is not None]
    if band:
        values += [v for side in band for v in side if v is not None]
    if threshold is not None:
        values.append(threshold)
    if not values or not labels:
        return f"<p>{_e(empty)}</p>"
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    n = len(labels)

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * (v - low) / (high - low)

    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">']
    if band:
        lower, upper = band
        points = [(x(i), y(u)) for i, u in enumerate(upper) if u is not None]
        points += [(x(i), y(lo)) for i, lo in reversed(list(enumerate(lower))) if lo is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polygon points="{path}" fill="{CURRENT_COLOUR}" opacity="0.15"/>')
    if threshold is not None:
        parts.append(
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
            f'stroke="{DRIFT_COLOUR}" stroke-dasharray="4 3"/>'
        )
    for colour, vs in series.values():
        points = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            for px, py in points:
                parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
    for i, alert in enumerate(markers):
        if alert:
            parts.append(
                f'<text x="{x(i):.1f}" y="{pad - 8}" font-size="14" fill="{DRIFT_COLOUR}" '
                f'text-anchor="middle">▲<title>alert raised by {_e(labels[i])}</title></text>'
            )
    for i, label in enumerate(labels):
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 10}" font-size="10" text-anchor="middle">'
            f"{_e(label.rpartition(':')[2] or label)}</text>"
        )
    parts.append(f'<text x="4" y="{y(high) + 4:.1f}" font-size="10">{high:.2f}</text>')
    parts.append(f'<text x="4" y="{y(low) + 4:.1f}" font-size="10">{low:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _legend(items: list[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span style="background:{c}"></span>{_e(t)}' for t, c in items
    ) + "</div>"  # fmt: skip


def _feature_chart(feature: dict[str, Any]) -> str:
    hist = feature.get("histogram")
    if hist and hist.get("edges"):
        # The bins are [e0, e1], (e1, e2], ...: said as such, since on whole numbers '0 - 1'
        # then '1 - 2' would put 1 in both (the second holds only 2).
        shown = {"<": "< {a:.4g}", "=": "= {a:.4g}", "[]": "[{a:.4g}, {b:.4g}]",
                 "(]": "({a:.4g}, {b:.4g}]", ">": "> {a:.4g}"}  # fmt: skip
        labels = [shown[how].format(a=a, b=b) for how, a, b in drift.histogram_bins(hist)]
        return bars_svg(labels, hist["reference"], hist["current"])
    freq = feature.get("frequencies")
    if freq:
        labels = list(freq)
        return bars_svg(labels, [v[0] for v in freq.values()], [v[1] for v in freq.values()])
    # A column the batch lacks, or holds no value of: nothing to draw, said (an empty figure).
    return f"<p class=sub>No chart: {_e(feature.get('note') or 'no values to compare')}.</p>"


def render_html(detail: ReportDetail, history: list[ReportRow], *, project: str = "") -> str:
    s = detail.summary
    row = detail.row
    features = [*s.get("features", []), *filter(None, [s.get("label"), s.get("prediction")])]
    # Beyond the features: the joint distribution, the label, the scores, the check's alerts
    # (a green "No dataset drift" headed a report whose check raised an alert and exited 3).
    also = [what for what, part in (("joint distribution", s.get("multivariate")),
                                    ("label", s.get("label")), ("scores", s.get("prediction")))
            if part and part.get("drifted")]  # fmt: skip
    also = [f"{', '.join(also)} drifted"] if also else []
    if detail.alerts:
        also.append(fmt.plural(len(detail.alerts), "alert") + " raised")
    if s.get("dataset_drift"):
        verdict = '<span class="drift">Dataset drift</span>'
    elif also:  # not green: something else called for attention
        verdict = "<span>No dataset drift</span>"
    else:
        verdict = '<span class="ok">No dataset drift</span>'
    if also:
        verdict += f' <span class="drift">({_e("; ".join(also))})</span>'
    share, share_threshold = fmt.apart(
        s.get("drift_share", 0), s.get("share_threshold", 0), percent=True
    )
    cards = [
        ("Drifted features", f"{s.get('n_drifted', 0)} of {s.get('n_features', 0)}"),
        ("Drift share", f"{share} (threshold {share_threshold})"),
        ("Rows", f"{s.get('rows', 0):,}"),
    ]
    multi = s.get("multivariate")
    if multi:
        cards.append(("Multivariate (PCA error)", f"{_fmt(multi.get('error'))} vs "
                      f"{_fmt(multi.get('reference_error'))}"
                      + (" — drift" if multi.get("drifted") else "")))  # fmt: skip
    est = s.get("estimated")
    if est and est.get("value") is not None:
        cards.append((f"Estimated {est['metric']}", f"{_fmt(est['value'])} "
                      f"[{_fmt(est.get('lower'))}, {_fmt(est.get('upper'))}]"))  # fmt: skip
    realized = s.get("realized") or {}
    metric = (est or {}).get("metric") or "roc_auc"
    if realized.get(metric) is not None:
        cards.append((f"Realized {metric}", _fmt(realized[metric])))
    rows_html = []
    for f in features:
        name = f["feature"] + (f" ({f['role']})" if f.get("role") not in (None, "feature") else "")
        score = _score(f)
        rows_html.append(
            f"<tr><td>{_e(name)}</td><td>{_e(f['method'])}</td><td class=num>{_e(score)}</td>"
            f"<td class=num>{f['threshold']:g}</td><td class="
            f"{'drift' if f['drifted'] else 'ok'}>{'drift' if f['drifted'] else 'ok'}</td>"
            f"<td>{_e(f.get('note', ''))}</td></tr>"
        )
    charts = "".join(
        f"<figure><figcaption><b>{_e(f['feature'])}</b> — {_e(f['method'])} "
        f"{_e(_score(f))}{' <span class=drift>drift</span>' if f['drifted'] else ''}"
        f"</figcaption>{_feature_chart(f)}</figure>"
        for f in features
    )
    labels = [r.batch for r in history]
    # Each chart marks the alerts about what it draws: drift, or a metric.
    drift_chart = line_svg({"drift share": (DRIFT_COLOUR, [r.drift_share for r in history])},
                           labels, [r.alerts > r.performance_alerts for r in history],
                           threshold=s.get("share_threshold"))  # fmt: skip
    perf_chart = line_svg(
        {"estimated": (CURRENT_COLOUR, [r.estimated for r in history]),
         "realized": (REFERENCE_COLOUR, [r.realized for r in history])},
        labels, [r.performance_alerts > 0 for r in history],
        band=([r.estimated_lower for r in history], [r.estimated_upper for r in history]),
        empty=("No performance figures: no model scored these batches."
               if not any(r.model for r in history)
               else "No performance figures yet: no estimate, and no labels."),
    )  # fmt: skip
    title = f"Drift report — {row.batch}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">
<title>{_e(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="sub">{_e(project)} · batch {_e(row.batch)} against reference {_e(detail.reference)}
{"· model " + _e(s["model"]) if s.get("model") else ""} · checked {_e(row.created_at.strftime("%Y-%m-%d %H:%M UTC"))}
· report {row.id}</p>
<p>{verdict}</p>
{"<p>" + _e(s["model"]) + " " + _e(s["model_note"]) + "</p>" if s.get("model_note") else ""}
<div class="cards">{"".join(f"<div class=card>{_e(k)}<b>{_e(v)}</b></div>" for k, v in cards)}</div>
<h2>Features, most severe first</h2>
<table><thead><tr><th>feature</th><th>method</th><th>score</th><th>threshold</th><th>drift</th>
<th>note</th></tr></thead><tbody>{"".join(rows_html)}</tbody></table>
<h2>Reference and batch distributions</h2>
{_legend([("reference", REFERENCE_COLOUR), ("batch", CURRENT_COLOUR)])}
<div class="grid">{charts}</div>
<h2>Over time</h2>
<p>Drift share per batch (dashed: the dataset-drift threshold; ▲ a drift alert was raised).</p>
{drift_chart}
<p>Estimated (with its 95 % band) and realized performance per batch (▲ a metric alert was raised).</p>
{_legend([("estimated", CURRENT_COLOUR), ("realized", REFERENCE_COLOUR)])}
{perf_chart}
</body></html>
"""

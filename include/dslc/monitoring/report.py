"""The drift report as one self-contained HTML page (charts inlined as SVG, no external files).

What it shows, top to bottom: the verdict and why; the policy's thresholds; performance
against the champion's holdout; a feature x day heatmap of PSI over the recent days; reference
vs current distributions of the drifted and the most important features; every statistic of
every feature. Charts are drawn with matplotlib's object API (no pyplot state, Agg canvas).
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Most distributions charted (drifted first, then the most important): the page stays fast.
MAX_CHARTS = 8
STATS = ("psi", "js", "wasserstein", "ks", "missing_ref", "missing_cur", "unseen_share")


def _svg(fig: Figure) -> str:
    """The figure as base64 SVG with its text left as text: a third faster to draw than a
    PNG of the same charts (glyphs are not rasterised), as sharp at any zoom, and the same
    bytes for the same report (fixed id salt, no date)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "dslc"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(data: str, alt: str) -> str:
    # As an <img>, an SVG is an image only: no script in it runs, nothing is fetched.
    return f'<img alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def distributions_chart(features: dict[str, dict[str, Any]]) -> str:
    """Reference vs current frequencies on the reference bins, one panel per feature, as one
    base64 SVG (one figure, drawn once: a figure per feature costs several times more)."""
    from matplotlib.figure import Figure

    names = list(features)
    cols = 2
    rows = max(1, (len(names) + cols - 1) // cols)
    fig = Figure(figsize=(11.0, 2.9 * rows))
    fig.subplots_adjust(left=0.06, right=0.99, top=0.95, bottom=0.09, hspace=0.95, wspace=0.15)
    for i, name in enumerate(names):
        s = features[name]
        labels = [str(b) for b in s.get("bins", [])]
        ref, cur = s.get("ref_freq", []), s.get("cur_freq", [])
        n = min(len(labels), len(ref), len(cur))
        ax = fig.add_subplot(rows, cols, i + 1)
        xs = list(range(n))
        ax.bar([x - 0.2 for x in xs], ref[:n], width=0.4, label="reference", color="#8da0cb")
        ax.bar([x + 0.2 for x in xs], cur[:n], width=0.4, label="current", color="#fc8d62")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels[:n], rotation=60, ha="right", fontsize=6)
        ax.tick_params(axis="y", labelsize=7)
        psi = s.get("psi")
        ax.set_title(name + (f"  (PSI {psi:.3f})" if psi is not None else ""), fontsize=9)
        if i == 0:
            ax.legend(fontsize=7)
    return _svg(fig)


def heatmap_chart(features: list[str], days: list[str], psi: list[list[float | None]]) -> str:
    """PSI per feature (rows) and day (columns), as a base64 SVG."""
    import numpy as np
    from matplotlib.figure import Figure

    grid = np.array([[np.nan if v is None else v for v in row] for row in psi], dtype="float64")
    width = max(5.0, 0.5 * len(days) + 3.0)
    fig = Figure(figsize=(width, 0.28 * len(features) + 1.5))
    fig.subplots_adjust(left=1.4 / width, right=0.97, top=0.9, bottom=0.12 + 0.5 / len(features))
    ax = fig.add_subplot()
    top = float(np.nanmax(grid)) if np.isfinite(grid).any() else 0.0
    image = ax.imshow(grid, aspect="auto", cmap="OrRd", vmin=0, vmax=max(0.5, top))
    ax.set_xticks(range(len(days)))
    ax.set_xticklabels([d[5:] for d in days], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(features)))
    ax.set_yticklabels(features, fontsize=7)
    ax.set_title("PSI by feature and day (blank: no report)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _svg(fig)


def heatmap_data(
    reports: list[dict[str, Any]], features: list[str]
) -> tuple[list[str], list[list[float | None]]]:
    """Days and the PSI grid (feature x day) from past reports plus today's."""
    days = [r["ds"] for r in reports]
    grid = [[r["features"].get(f, {}).get("psi") for r in reports] for f in features]
    return days, grid


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _charted(report: dict[str, Any]) -> list[str]:
    drifted = [d["feature"] for d in report["dataset"]["drifted_features"]]
    top = list(report["dataset"].get("top_features", []))
    ranked = sorted(report["features"], key=lambda f: -(report["features"][f].get("psi") or 0.0))
    return list(dict.fromkeys([*drifted, *top, *ranked]))[:MAX_CHARTS]


def _feature_table(report: dict[str, Any]) -> str:
    head = "".join(f"<th>{s}</th>" for s in (*STATS, "drifted", "crossed"))
    rows = []
    for col, s in sorted(report["features"].items()):
        crossed = ", ".join(
            f"{c['statistic']} {c['value']:.3f} &ge; {c['threshold']}" for c in s.get("crossed", [])
        )
        cells = "".join(f"<td>{_fmt(s.get(k))}</td>" for k in STATS)
        cls = ' class="drift"' if s.get("drifted") else ""
        rows.append(
            f"<tr{cls}><td>{html.escape(col)}</td><td>{s['kind']}</td>{cells}"
            f"<td>{_fmt(bool(s.get('drifted')))}</td><td>{crossed}</td></tr>"
        )
    return f"<table><tr><th>feature</th><th>kind</th>{head}</tr>{''.join(rows)}</table>"


def _kv(pairs: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in pairs.items()
    )
    return f"<table class='kv'>{rows}</table>"


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.2rem .45rem;text-align:left}
tr.drift td{background:#fde0d9}.verdict{font-size:1.2rem;padding:.6rem;border-radius:4px}
.drift-yes{background:#fde0d9}.drift-no{background:#e3f4e1}
.charts img{margin:.3rem;border:1px solid #eee}
"""


def _verdict(report: dict[str, Any]) -> str:
    ds_, decision, window = report["dataset"], report["decision"], report["window"]
    drifted = bool(ds_["drifted"])
    reasons = "; ".join(ds_["reasons"]) or "no dataset-level rule fired"
    head = "DATA DRIFT" if drifted else "No data drift"
    policy = "retrain" if decision["retrain"] else "no retrain"
    return (
        f'<p class="verdict {"drift-yes" if drifted else "drift-no"}">'
        f"{head} on {window['first']}..{window['last']}: {html.escape(reasons)}.<br>"
        f"Policy: <b>{policy}</b> ({html.escape(decision['reason'])}). The guards (kill "
        "switch, a train run in flight, cooldown, once per version and day) come next; their "
        "outcome is in <code>decision.json</code> beside this page.</p>"
    )


def _inputs(report: dict[str, Any]) -> dict[str, Any]:
    ref, window, ds_ = report["reference"], report["window"], report["dataset"]
    return {
        "reference": f"{ref['model']} version {ref['version']} (run {ref['run_id']})",
        "reference rows (training)": ref.get("profile_rows"),
        "current rows": report["rows"]["current"],
        "days in window": ", ".join(window["present"]),
        "days missing": ", ".join(window["missing"]) or None,
        "drifted share": ds_["share"],
        "most important features": ", ".join(ds_.get("top_features", [])) or None,
    }


def _performance(report: dict[str, Any]) -> dict[str, Any]:
    perf = report.get("performance") or {}
    keys = ("rows", "roc_auc", "log_loss", "auc_drop", "drifted", "note")
    out = {k: perf.get(k) for k in keys if k in perf}
    holdout = report["reference"].get("holdout") or {}
    return out | {f"holdout {k}": v for k, v in holdout.items()}


def render(report: dict[str, Any], past: list[dict[str, Any]]) -> str:
    """The page for ``report``; ``past`` are earlier days' reports (oldest first)."""
    ref = report["reference"]
    features = sorted(report["features"])
    days, grid = heatmap_data([r for r in past if r["ds"] < report["ds"]] + [report], features)
    charted = _charted(report)
    charts = _img(
        distributions_chart({f: report["features"][f] for f in charted}), ", ".join(charted)
    )
    title = html.escape(f"Drift {report['ds']}: {ref['model']} v{ref['version']}")
    body = [
        f"<h1>{title}</h1>",
        _verdict(report),
        "<h2>Inputs</h2>",
        _kv(_inputs(report)),
        "<h2>Thresholds</h2>",
        _kv(report["policy"]),
        "<h2>Performance: the champion's logged predictions vs the labels</h2>",
        _kv(_performance(report)),
        "<h2>PSI by feature and day</h2>",
        _img(heatmap_chart(features, days, grid), "PSI heatmap"),
        "<h2>Distributions: reference vs current</h2>",
        f'<div class="charts">{charts}</div>',
        "<h2>Every feature</h2>",
        _feature_table(report),
    ]
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )

"""``crmcore report``: one self-contained HTML dashboard (inline CSS and SVG; no network).

:func:`html_report` reads a store and returns the page: KPI tiles, the FTD funnel as a bar
chart, clients per desk, and the retention queues with their top items (reasons and
actions). :func:`sections` gives the same figures as data, for tests and hosts that draw
their own.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from crmcore.storage.base import Store
from crmcore.storage.records import QueueItem

__all__ = ["html_report", "sections"]

STAGES = ("registered", "kyc_submitted", "kyc_approved", "funded")
_REACHED = {"registered": 0, "kyc_submitted": 1, "kyc_approved": 2, "funded": 3}


def sections(store: Store, *, top: int = 10) -> dict[str, Any]:
    """The dashboard's figures: ``tiles``, ``funnel`` (clients who reached each stage),
    ``desks`` (clients per desk now), ``queues`` (open items per queue, best first)."""
    funnel = Counter[str]()
    desks = Counter[str]()
    clients = 0
    for client in store.clients():
        clients += 1
        reached = _reached(client)
        for stage in STAGES[: reached + 1]:
            funnel[stage] += 1
        desks[client.get("desk_id") or "(none)"] += 1
    queues: dict[str, list[QueueItem]] = {}
    for item in store.queue_items():
        queues.setdefault(item.queue, []).append(item)
    funded = funnel["funded"]
    tiles = {
        "clients": clients,
        "funded (FTD)": funded,
        "FTD conversion": f"{funded / clients:.1%}" if clients else "-",
        "open queue items": sum(len(items) for items in queues.values()),
    }
    return {
        "tiles": tiles,
        "funnel": [(stage, funnel[stage]) for stage in STAGES],
        "desks": sorted(desks.items()),
        "queues": {name: items[:top] for name, items in sorted(queues.items())},
        "queue_sizes": {name: len(items) for name, items in sorted(queues.items())},
    }


def _reached(client: Mapping[str, Any]) -> int:
    """How far in the funnel a client got (a rejected KYC keeps its submission)."""
    if client.get("ftd_at") is not None:
        return 3
    if client.get("kyc_approved_at") is not None:
        return 2
    if client.get("kyc_submitted_at") is not None:
        return 1
    return _REACHED.get(client.get("stage") or "registered", 0)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#aab3c5;font-size:13px}main{padding:20px 28px;display:grid;gap:20px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px}
.tile{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.tile .v{font-size:26px;font-weight:600}.tile .k{color:#5b6477;font-size:13px}
section{background:#fff;border-radius:8px;padding:16px 18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
section h2{margin:0 0 12px;font-size:16px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e8ee}th{color:#5b6477;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}.grid2{display:grid;grid-template-columns:1fr 1fr;gap:20px}
"""


def _bars(rows: Sequence[tuple[str, float]], *, chart_id: str, width: int = 520, bar: int = 26) -> str:
    """A horizontal bar chart as inline SVG."""
    peak = max((value for _, value in rows), default=0) or 1
    height = len(rows) * (bar + 8) + 8
    parts = [f'<svg id="{chart_id}" class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    for k, (label, value) in enumerate(rows):
        y = 8 + k * (bar + 8)
        length = (width - 240) * value / peak
        parts.append(f'<text x="0" y="{y + bar * 0.68:.0f}" font-size="13" fill="#1d2330">{html.escape(label)}</text>')
        parts.append(f'<rect x="140" y="{y}" width="{length:.1f}" height="{bar}" rx="3" fill="#3c6df0"/>')
        parts.append(f'<text x="{146 + length:.1f}" y="{y + bar * 0.68:.0f}" font-size="13" fill="#5b6477">{value:,.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(store: Store, *, title: str = "crmcore dashboard", as_of: datetime | None = None,
                extra: Sequence[tuple[str, str]] = ()) -> str:
    """The dashboard page; ``extra`` adds ``(heading, html)`` sections (e.g. KPI tables)."""
    data = sections(store)
    as_of = as_of or store.latest_event_at()
    tiles = "".join(f'<div class="tile"><div class="v">{html.escape(str(v if isinstance(v, str) else f"{v:,}"))}</div>'
                    f'<div class="k">{html.escape(k)}</div></div>' for k, v in data["tiles"].items())
    funnel = _bars([(stage.replace("_", " "), n) for stage, n in data["funnel"]], chart_id="funnel-chart")
    desks = _bars([(desk, n) for desk, n in data["desks"]], chart_id="desk-chart")
    queue_html = []
    for name, items in data["queues"].items():
        rows = "".join(
            f"<tr><td class=n>{item.priority:,.1f}</td><td>{html.escape(item.client_id)}</td><td>{html.escape(item.trigger)}</td>"
            f"<td>{html.escape(item.desk or '-')}</td><td>{html.escape(item.agent_id or '-')}</td>"
            f"<td>{html.escape('; '.join(item.actions))}</td></tr>" for item in items)
        queue_html.append(
            f"<h3>{html.escape(name)} <small>({data['queue_sizes'][name]:,} open)</small></h3><table>"
            "<tr><th>priority</th><th>client</th><th>reason</th><th>desk</th><th>agent</th><th>actions</th></tr>"
            f"{rows}</table>")
    extra_html = "".join(f"<section><h2>{html.escape(h)}</h2>{body}</section>" for h, body in extra)
    when = f"as of {as_of:%Y-%m-%d %H:%M} UTC" if as_of is not None else "no events yet"
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1><p>{when}</p></header><main>"
        f'<div class="tiles" id="kpi-tiles">{tiles}</div>'
        f'<div class="grid2"><section><h2>FTD funnel</h2>{funnel}</section>'
        f"<section><h2>Clients per desk</h2>{desks}</section></div>"
        f"{extra_html}"
        f'<section id="queues"><h2>Retention queues</h2>{"".join(queue_html) or "<p>No open items.</p>"}</section>'
        "</main></body></html>\n"
    )

"""``crmcore report``: one self-contained HTML dashboard (inline CSS and SVG; no network).

:func:`dashboard` computes the figures (in SQL on a SqlStore, through :mod:`crmcore.kpi`):
KPI totals and KPIs per desk over a period, the FTD funnel of the 90 days before its end
with weekly cohorts, net deposits in the 13 weeks before its end, the FTD leaderboard of
the sales agents (retention agents take clients after their FTD) against the targets, and
capacity per desk. :func:`html_report` draws them with the store's open queue items (their
reasons and actions) as one page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crmcore.rules import model
from crmcore.storage.base import Store
from crmcore.storage.records import QueueItem

__all__ = ["dashboard", "html_report"]

STAGES = ("registered", "kyc_submitted", "kyc_approved", "funded")
TOTALS = ("registrations", "ftd_count", "ftd_conversion_rate", "avg_time_to_ftd_days", "net_deposits", "revenue",
          "active_clients", "churn_rate", "first_contact_sla_rate", "cpa")
BY_DESK = ("registrations", "ftd_count", "ftd_conversion_rate", "net_deposits", "revenue", "active_clients",
           "first_contact_sla_rate")
BY_SOURCE = ("registrations", "ftd_count", "ftd_conversion_rate", "cpa")
FUNNEL_DAYS = 90
FLOW_WEEKS = 13


def dashboard(store: Store, start: datetime, end: datetime, *, as_of: datetime | None = None,
              targets: Sequence[model.Target] | None = None) -> dict[str, Any]:
    """The dashboard's figures for the period ``[start, end)`` (see the module docstring);
    ``targets`` replaces the store's."""
    from crmcore import kpi
    from crmcore.kpi.capacity import capacity
    from crmcore.kpi.funnel import funnel
    from crmcore.kpi.leaderboard import leaderboard

    moment = kpi.as_of_default(store, as_of)
    quarter = (end - timedelta(days=FUNNEL_DAYS), end)
    weeks = []
    week = end - timedelta(weeks=FLOW_WEEKS)
    while week < end:
        following = min(week + timedelta(days=7), end)
        (row,) = kpi.compute(store, week, following, ["net_deposits"], as_of=moment)
        weeks.append((f"{week:%d %b}", row["net_deposits"]))
        week = following
    (totals,) = kpi.compute(store, start, end, TOTALS, as_of=moment)
    return {
        "period": (start, end),
        "as_of": moment,
        "totals": totals,
        "kpis": kpi.compute(store, start, end, BY_DESK, by="desk", as_of=moment),
        "acquisition": kpi.compute(store, start, end, BY_SOURCE, by="source", as_of=moment),
        "funnel": funnel(store, *quarter, as_of=moment),
        "cohorts": funnel(store, *quarter, cohort="week", as_of=moment),
        "flow": weeks,
        "leaderboard": _sales_only(store, leaderboard(store, start, end, "ftd_count", by="agent", as_of=moment,
                                                      targets=targets)),
        "capacity": capacity(store, as_of=moment),
    }


def _sales_only(store: Store, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leaderboard without the agents of retention desks, ranked again 1, 2, 3, ..."""
    agents, desks = store.agents(), store.desks()

    def retention(agent_id: str) -> bool:
        desk = desks.get(agents[agent_id].desk) if agent_id in agents else None
        return desk is not None and desk.kind == "retention"

    kept = [row for row in rows if not retention(row["agent"])]
    return [{**row, "rank": rank} for rank, row in enumerate(kept, start=1)]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#aab3c5;font-size:13px}main{padding:20px 28px;display:grid;gap:20px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:14px}
.tile{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.tile .v{font-size:24px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}.tile .k{color:#5b6477;font-size:13px}
section{background:#fff;border-radius:8px;padding:16px 18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
section h2{margin:0 0 12px;font-size:16px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e8ee}th{color:#5b6477;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}.grid2{display:grid;grid-template-columns:1fr 1fr;gap:20px}
"""


def _shown(value: Any, name: str = "") -> str:
    if value is None:
        return "-"
    if name.endswith("_rate"):
        return f"{value:.1%}"
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _bars(rows: Sequence[tuple[str, float]], *, chart_id: str, width: int = 520, bar: int = 22, percent: bool = False) -> str:
    """A horizontal bar chart as inline SVG; negative values are drawn red, left of zero."""
    peak = max((abs(value) for _, value in rows), default=0) or 1
    negative = any(value < 0 for _, value in rows)
    span = width - 240
    zero = 140 + (span / 2 if negative else 0)
    scale = (span / 2 if negative else span) / peak
    height = len(rows) * (bar + 6) + 8
    parts = [f'<svg id="{chart_id}" class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    for k, (label, value) in enumerate(rows):
        y = 6 + k * (bar + 6)
        length = abs(value) * scale
        x = zero - length if value < 0 else zero
        colour = "#d64545" if value < 0 else "#3c6df0"
        text = f"{value:.0%}" if percent else f"{value:,.0f}"
        parts.append(f'<text x="0" y="{y + bar * 0.7:.0f}" font-size="12" fill="#1d2330">{html.escape(label)}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{max(length, 0.5):.1f}" height="{bar}" rx="3" fill="{colour}"/>')
        parts.append(f'<text x="{max(x + length, zero) + 6:.1f}" y="{y + bar * 0.7:.0f}" font-size="12" fill="#5b6477">{text}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _meter(share: float | None, *, width: int = 140, mark: float | None = None) -> str:
    """A small bar for a share (attainment, utilisation); ``mark`` draws a line (e.g. 100 %)."""
    if share is None:
        return "-"
    fill = min(share, 1.5) / 1.5 * width
    colour = "#2f9e6a" if share >= 1 else "#3c6df0"
    line = f'<line x1="{mark / 1.5 * width:.1f}" y1="0" x2="{mark / 1.5 * width:.1f}" y2="14" stroke="#1d2330"/>' if mark else ""
    return (f'<svg class="meter" width="{width}" height="14" xmlns="http://www.w3.org/2000/svg">'
            f'<rect width="{width}" height="14" rx="3" fill="#e6e8ee"/><rect width="{fill:.1f}" height="14" rx="3" fill="{colour}"/>'
            f"{line}</svg> {share:.0%}")


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, table_id: str,
           extra: Mapping[str, Any] | None = None) -> str:
    """Rows as an HTML table; ``extra`` maps a column to a function drawing its cell."""
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            if extra and c in extra:
                cells.append(f"<td>{extra[c](row)}</td>")
            else:
                value = row.get(c)
                numeric = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
                cells.append(f"<td{' class=n' if numeric else ''}>{html.escape(_shown(value, c))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(body)}</table>'


def _queues(store: Store, top: int = 10) -> str:
    queues: dict[str, list[QueueItem]] = {}
    for item in store.queue_items():
        queues.setdefault(item.queue, []).append(item)
    parts = []
    for name, items in sorted(queues.items()):
        rows = "".join(
            f"<tr><td class=n>{item.priority:,.1f}</td><td>{html.escape(item.client_id)}</td><td>{html.escape(item.trigger)}</td>"
            f"<td>{html.escape(item.desk or '-')}</td><td>{html.escape(item.agent_id or '-')}</td>"
            f"<td>{html.escape('; '.join(item.actions))}</td></tr>" for item in items[:top])
        parts.append(
            f"<h3>{html.escape(name)} <small>({len(items):,} open)</small></h3><table>"
            "<tr><th>priority</th><th>client</th><th>reason</th><th>desk</th><th>agent</th><th>actions</th></tr>"
            f"{rows}</table>")
    return "".join(parts) or "<p>No open items.</p>"


def html_report(store: Store, data: Mapping[str, Any], *, title: str = "crmcore dashboard") -> str:
    """The dashboard page for ``data`` (from :func:`dashboard`) and the store's queues."""
    start, end = data["period"]
    totals = data["totals"]
    tile_names = {"registrations": "registrations", "ftd_count": "FTDs", "ftd_conversion_rate": "FTD conversion",
                  "net_deposits": "net deposits", "revenue": "revenue", "active_clients": "active clients",
                  "churn_rate": "churn", "first_contact_sla_rate": "first contact in SLA"}
    tiles = "".join(f'<div class="tile"><div class="v">{html.escape(_shown(totals.get(k), k))}</div>'
                    f'<div class="k">{html.escape(label)}</div></div>' for k, label in tile_names.items())
    (funnel_row,) = data["funnel"] or [dict.fromkeys(STAGES, 0)]
    funnel = _bars([(stage.replace("_", " "), funnel_row.get(stage) or 0) for stage in STAGES], chart_id="funnel-chart")
    cohorts = _bars([(str(row["cohort"]), row.get("funded_overall") or 0.0) for row in data["cohorts"]],
                    chart_id="cohort-chart", percent=True)
    flow = _bars([(label, float(value or 0)) for label, value in data["flow"]], chart_id="flow-chart")
    leaderboard = _table(data["leaderboard"], ["rank", "agent", "ftd_count", "target", "attainment"], table_id="leaderboard",
                         extra={"attainment": lambda row: _meter(row.get("attainment"), mark=1.0)})
    capacity = _table(data["capacity"], ["desk", "agents", "open", "capacity", "utilisation", "incoming_per_day", "agents_needed"],
                      table_id="capacity", extra={"utilisation": lambda row: _meter(row.get("utilisation"), mark=0.8)})
    by_desk = _table(data["kpis"], ["desk", *BY_DESK], table_id="kpis-by-desk")
    by_source = _table(data["acquisition"], ["source", *BY_SOURCE], table_id="acquisition")
    period = f"{start:%Y-%m-%d} to {end:%Y-%m-%d} (end excluded)"
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1>"
        f"<p>KPIs for {period}; as of {data['as_of']:%Y-%m-%d %H:%M} UTC</p></header><main>"
        f'<div class="tiles" id="kpi-tiles">{tiles}</div>'
        f'<div class="grid2"><section><h2>FTD funnel (registered in the {FUNNEL_DAYS} days before the period end)</h2>{funnel}</section>'
        f"<section><h2>Conversion to FTD by weekly cohort</h2>{cohorts}</section></div>"
        f'<div class="grid2"><section><h2>Net deposits per week</h2>{flow}</section>'
        f"<section><h2>Leaderboard: FTDs per sales agent against target</h2>{leaderboard}</section></div>"
        f"<section><h2>KPIs per desk</h2>{by_desk}</section>"
        f"<section><h2>Acquisition: cost per FTD by source</h2>{by_source}</section>"
        f"<section><h2>Capacity per desk</h2>{capacity}</section>"
        f'<section id="queues"><h2>Retention queues</h2>{_queues(store)}</section>'
        "</main></body></html>\n"
    )

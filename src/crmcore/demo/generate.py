"""A synthetic broker's event stream: seeded, realistic enough that every KPI, trigger and
queue has something to show.

:func:`events` yields, in time order, everything a broker's back office would send over
``days`` days: IBs and campaign costs first, then per client a life drawn at random —

- registration (country and language, source and campaign, an IB for IB clients, the
  onboarding questionnaire: the demo rules' schema fields), e-mail opens and clicks;
- KYC: most submit, most of those are approved, some rejected;
- contacts: a first call within minutes or hours (so some SLAs are missed), follow-ups with
  outcomes and callbacks. They come *without* ``agent_id``: who calls is the agent holding
  the client when the call happens, which only the engine knows (the demo's driver asks
  the store and fills it in, or drops the call when nobody holds the client);
- the first deposit for a share of approved clients (some after a failed attempt), then
  for the funded: logins, trades with P&L and broker revenue, more deposits, withdrawals
  (some failed), weekly account snapshots with margin levels (some near a margin call); a
  share of them slows down and stops ("leaving quietly"), which is what retention is for;
- a sales agent's ten-day leave in the middle of the period (``agent_updated``).

Distributions are plain and documented in the code; the same seed gives the same events.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["END", "events"]

END = datetime(2026, 3, 1, tzinfo=UTC)
"""The demo's 'now': the last day of generated activity ends here."""

COUNTRIES = [  # (country, language, weight)
    ("DE", "de", 14), ("GB", "en", 12), ("FR", "fr", 8), ("ES", "es", 7), ("IT", "it", 7),
    ("AT", "de", 4), ("CH", "de", 4), ("NL", "en", 4), ("SE", "sv", 3), ("PL", "pl", 4),
    ("NG", "en", 6), ("ZA", "en", 5), ("BR", "pt", 7), ("AE", "ar", 4), ("MY", "en", 4),
    ("TH", "en", 3), ("RU", "ru", 4),
]
SOURCES = [  # (source, campaign, weight, monthly cost)
    ("google_ads", "brand-search", 20, 18_000), ("facebook", "lookalike", 16, 12_000),
    ("seo_trading_guides", None, 14, 0), ("referral", None, 10, 0), ("webinar", "market-outlook", 8, 4_000),
    ("bonus_affiliate", "welcome-bonus", 14, 9_000), ("giveaway", "summer-draw", 6, 3_000), ("ib", None, 12, 0),
]
IBS = [("IB-1001", 88), ("IB-1007", 76), ("IB-1042", 91), ("IB-2003", 45), ("IB-2011", 30), ("IB-3100", 62)]
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "US30", "GER40", "BTCUSD", "NAS100"]
OUTCOMES_FIRST = ["no_answer", "reached", "interested", "callback", "not_interested", "wrong_number"]
OUTCOME_WEIGHTS_FIRST = [30, 20, 20, 18, 8, 4]

@dataclass(order=True)
class _Pending:
    at: datetime
    order: int
    event: dict[str, Any] = field(compare=False)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _money(rng: random.Random, low: float, high: float) -> str:
    return f"{rng.uniform(low, high):.2f}"


class _Stream:
    """Events of many clients, released in time order."""

    def __init__(self) -> None:
        self.heap: list[_Pending] = []
        self.order = 0

    def add(self, at: datetime, event: dict[str, Any]) -> None:
        if at > END:
            return
        self.order += 1
        event["at"] = at
        heapq.heappush(self.heap, _Pending(at, self.order, event))


def _client_life(rng: random.Random, n: int, start: datetime, days: int, stream: _Stream) -> None:
    """Queue one client's events (contacts carry no agent yet: the holder is asked later)."""
    cid = f"c{n:06d}"
    eid = iter(range(1_000_000))

    def add(at: datetime, kind: str, **fields: Any) -> None:
        stream.add(at, {"id": f"{cid}-{next(eid)}", "type": kind, "client_id": cid, **fields})

    registered = start + timedelta(seconds=rng.randrange(0, days * 86400))
    country, language, _ = rng.choices(COUNTRIES, [w for *_, w in COUNTRIES])[0]
    source, campaign, _, _ = rng.choices(SOURCES, [s[2] for s in SOURCES])[0]
    fields: dict[str, Any] = {"country": country, "language": language, "source": source,
                              "email": f"{cid}@{rng.choice(['gmail.com', 'yahoo.com', 'example-firm.com', 'outlook.com'])}",
                              "phone_verified": rng.random() < 0.6}
    if campaign:
        fields["campaign"] = campaign
        fields["utm_campaign"] = f"{campaign}-{country.lower()}"
    if source == "ib":
        fields["ib_id"] = rng.choice(IBS)[0]
    if rng.random() < 0.5:
        fields["trading_experience"] = rng.choice(["none", "some", "experienced"])
        fields["demo_trades"] = rng.randrange(0, 60)
    if rng.random() < 0.3:
        fields["declared_income"] = rng.randrange(15, 250) * 1000
    if rng.random() < 0.01:
        fields["vip"] = True
    intent = {"referral": 0.75, "seo_trading_guides": 0.65, "webinar": 0.7, "ib": 0.7, "google_ads": 0.5,
              "facebook": 0.4, "bonus_affiliate": 0.25, "giveaway": 0.2}[source]
    add(registered, "client_registered", **fields)
    for _ in range(rng.randrange(0, 5)):
        opened = registered + timedelta(hours=rng.uniform(1, 24 * 14))
        add(opened, "email_opened")
        if rng.random() < 0.4:
            add(opened + timedelta(minutes=rng.uniform(0, 30)), "email_clicked")
    # the first call, then follow-ups
    first_call = registered + timedelta(minutes=rng.expovariate(1 / 150))
    outcome = rng.choices(OUTCOMES_FIRST, OUTCOME_WEIGHTS_FIRST)[0]
    callback = {"callback_at": _iso(first_call + timedelta(hours=rng.uniform(4, 72)))} if outcome == "callback" else {}
    add(first_call, "contact", channel="call", outcome=outcome, **callback)
    for k in range(rng.randrange(0, 4)):
        at = first_call + timedelta(days=rng.uniform(1, 20) * (k + 1))
        add(at, "contact", channel=rng.choice(["call", "call", "email", "sms", "chat"]),
            outcome=rng.choice(["reached", "interested", "no_answer", "not_interested"]))
    if rng.random() > intent + 0.1:
        return  # never gets to KYC
    kyc = registered + timedelta(hours=rng.uniform(0.5, 72))
    add(kyc, "kyc_submitted")
    if rng.random() < 0.1:
        add(kyc + timedelta(hours=rng.uniform(1, 48)), "kyc_rejected")
        return
    approved = kyc + timedelta(hours=rng.uniform(1, 48))
    add(approved, "kyc_approved")
    if rng.random() > intent:
        return  # approved, never deposits: ftd_chase
    ftd = approved + timedelta(days=rng.expovariate(1 / 4))
    if rng.random() < 0.12:
        add(ftd - timedelta(minutes=rng.uniform(5, 120)), "deposit", amount=_money(rng, 100, 1000), status="failed")
    amount = rng.choice([100, 250, 250, 500, 500, 1000, 2000, 5000])
    add(ftd, "deposit", amount=f"{amount:.2f}", currency=rng.choice(["EUR", "USD"]))
    _funded_life(rng, add, ftd, float(amount))


def _funded_life(rng: random.Random, add: Callable[..., None], ftd: datetime, balance: float) -> None:
    """Logins, trades, deposits, withdrawals and snapshots until the client stops (or END)."""
    leaves = rng.random() < 0.35
    active_days = rng.uniform(5, 60) if leaves else 10_000
    activity = rng.uniform(0.3, 1.0)  # share of days with a login
    day = ftd
    last_snapshot = ftd
    while day < END and (day - ftd).days < active_days:
        day += timedelta(hours=rng.uniform(12, 60) / activity)
        if leaves and (day - ftd).days > active_days * 0.7 and rng.random() < 0.5:
            continue  # slowing down before leaving
        add(day, "login")
        for _ in range(rng.randrange(0, 4)):
            at = day + timedelta(minutes=rng.uniform(1, 240))
            volume = round(rng.uniform(0.01, 3.0), 2)
            pnl = round(rng.gauss(-volume * 8, volume * 60), 2)
            balance = max(0.0, balance + pnl)
            add(at, "trade", volume=f"{volume:.2f}", pnl=f"{pnl:.2f}", revenue=f"{volume * rng.uniform(3, 9):.2f}",
                symbol=rng.choice(SYMBOLS))
        if rng.random() < 0.07:
            top_up = rng.choice([100, 200, 500, 1000, 2500])
            status = "failed" if rng.random() < 0.06 else "completed"
            add(day + timedelta(hours=1), "deposit", amount=f"{top_up:.2f}", status=status)
            if status == "completed":
                balance += top_up
        if rng.random() < 0.025 and balance > 200:
            amount = round(balance * rng.uniform(0.2, 0.9), 2)
            requested = day + timedelta(hours=2)
            add(requested, "withdrawal", amount=f"{amount:.2f}", status="requested")
            status = "failed" if rng.random() < 0.15 else "completed"
            add(requested + timedelta(hours=rng.uniform(2, 48)), "withdrawal", amount=f"{amount:.2f}", status=status)
            if status == "completed":
                balance -= amount
        if day - last_snapshot >= timedelta(days=7):
            last_snapshot = day
            positions = rng.randrange(0, 8)
            margin = rng.uniform(80, 400) if positions and rng.random() < 0.2 else rng.uniform(400, 3000)
            floating = rng.gauss(0, 80) * positions
            add(day + timedelta(hours=3), "account_snapshot", balance=f"{balance:.2f}",
                equity=f"{balance + floating:.2f}", margin_level=f"{margin:.1f}" if positions else None,
                open_positions=positions, floating_pnl=f"{floating:.2f}")


def events(clients: int = 10_000, *, days: int = 90, seed: int = 7) -> Iterator[dict[str, Any]]:
    """The demo broker's events in time order (``at`` as ISO 8601 text), ending at :data:`END`;
    contacts without ``agent_id`` (see the module docstring)."""
    rng = random.Random(seed)
    start = END - timedelta(days=days)
    setup = start - timedelta(days=1)
    for k, (ib_id, quality) in enumerate(IBS):
        yield {"id": f"ib-{k}", "type": "ib_updated", "at": _iso(setup),
               "ib": {"id": ib_id, "quality": quality, **({"manager_id": "m-senior"} if quality > 80 else {})}}
    month = start.replace(day=1)
    k = 0
    while month < END:
        following = (month + timedelta(days=32)).replace(day=1)
        for source, campaign, _, cost in SOURCES:
            if cost:
                k += 1
                yield {"id": f"cost-{k}", "type": "campaign_cost", "at": _iso(setup), "source": source,
                       "campaign": campaign, "amount": f"{cost * clients / 10_000:.2f}",
                       "period_start": month.date().isoformat(), "period_end": following.date().isoformat()}
        month = following
    stream = _Stream()
    for n in range(1, clients + 1):
        _client_life(rng, n, start, days, stream)
    # a leave: a sales agent is away for ten days in the middle of the period (their clients
    # are routed again when they go; new leads skip them until they are back)
    leave = start + timedelta(days=days // 2)
    stream.add(leave, {"id": "leave-a08", "type": "agent_updated", "agent": {"id": "a08", "active": False}})
    stream.add(leave + timedelta(days=10), {"id": "back-a08", "type": "agent_updated", "agent": {"id": "a08", "active": True}})
    while stream.heap:
        event = heapq.heappop(stream.heap).event
        event["at"] = _iso(event["at"])
        yield {k: v for k, v in event.items() if v is not None}

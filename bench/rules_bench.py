"""Benchmark: crmcore's compiled rules against the same logic written by hand.

    python bench/rules_bench.py                 # 50,000 leads (the issue's figure)
    python bench/rules_bench.py --leads 2000    # quick smoke run

A seeded generator makes synthetic leads as a host has them: plain dicts, aware
``datetime`` timestamps (UTC and +02:00), optional fields set to ``None``,
``Decimal`` amounts. The rule set (``RULES``) has a lead score of 20 rules and
8 first-match registration routing rules producing a desk; ``hand_written``
implements exactly the same semantics as idiomatic Python. Before anything is
timed, both must give the same score, band and desk for every lead and for
variants with a null or an on-the-threshold value.

crmcore is timed through its public API only, conversion of the host's record
included: ``rules.evaluate(ctx)`` then ``.scores["lead"]`` and ``.route.desk``
(what a host does), and the same reads after ``rules.evaluate_many(contexts)``.
Each of ``--repeat`` rounds times every variant once over all leads
(``time.perf_counter``, GC paused, order alternating); the best run counts, and
the goal (>= 0.8) is on crmcore / hand-written in leads per second. The
median of the per-round ratios is printed too: on a shared machine it is the
steadier figure.

Then a generated 1,000-rule file (700 score rules, 200 routing rules, 100
triggers) is loaded, checked and compiled with ``crmcore.load_rules`` (goal < 1 s).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import crmcore
from common import cpu_pressure

Context = Mapping[str, Any]
Outcome = tuple[float, str | None, str | None]  # lead score, lead band, desk

# ------------------------------------------------------------------------------- the rule set

RULES = r"""
version: 1

lists:
  TIER1: ["DE", "CH", "GB", "AT", "NL", "SE", "NO", "DK", "LU"]
  DACH: ["DE", "AT", "CH"]
  HIGH_INTENT_SOURCES: ["referral", "seo_trading_guides", "webinar"]
  LOW_INTENT_SOURCES: ["bonus_affiliate", "giveaway"]
  PREMIUM_IBS: ["IB-1001", "IB-1007", "IB-1042"]

schema:
  client:
    vip: {type: bool, default: false}
    declared_income: number?
    trading_experience: string?
    demo_trades: {type: int, default: 0}

desks:
  - {id: vip, kind: sales}
  - {id: sales-senior, kind: sales}
  - {id: sales-dach, kind: sales}
  - {id: sales-cis, kind: sales}
  - {id: sales-pool, kind: sales}
  - {id: sales-callback, kind: sales}
  - {id: sales-general, kind: sales}

scores:
  lead:
    rules:
      - {name: tier1_country, when: 'client.country in TIER1', points: 20}
      - {name: fast_kyc, when: 'client.kyc_submitted_at - client.registered_at <= 24h', points: 15}
      - {name: kyc_advanced, when: 'client.stage in ["kyc_approved", "funded"]', points: 10}
      - {name: ib_quality, when: 'ib != null and ib.quality >= 50', points: 'ib.quality * 0.2'}
      - {name: phone_verified, when: 'client.phone_verified', points: 10}
      - {name: engaged, when: 'client.email_clicks >= 2 or client.email_opens >= 5', points: 7}
      - {name: high_intent_source, when: 'client.source in HIGH_INTENT_SOURCES', points: 10}
      - name: business_email
        when: 'client.email != null and not (client.email matches "(?i)@(gmail|googlemail|yahoo|hotmail|outlook|live|gmx|web|mail)\.[a-z.]+$")'
        points: 5
      - {name: german_email, when: 'endswith(client.email, ".de")', points: 3}
      - {name: experienced, when: 'client.trading_experience == "experienced" or client.demo_trades >= 20', points: 10}
      - name: declared_income
        when: 'client.declared_income >= 60000'
        points: 'if client.declared_income >= 150000 then 15 else 8'
      - {name: fresh_registration, when: 'client.registered_at >= now - 2d', points: 5}
      - {name: gone_cold, when: 'client.stage == "registered" and hours_since(client.registered_at) > 72', points: -20}
      - {name: logged_in_recently, when: 'days_since(client.last_login_at) <= 3', points: 6}
      - {name: big_ftd, when: 'client.ftd_amount >= 1000', points: 25}
      - {name: funded_balance, when: 'client.balance > 500 and client.stage == "funded"', points: 5}
      - {name: no_language, when: 'client.language == null', points: -5}
      - {name: foreign_speaker, when: 'client.language in ["de", "en", "fr"] and client.country not in DACH', points: 3}
      - {name: promo_campaign, when: 'startswith(client.campaign, "bf_") or client.campaign == "webinar_2026"', points: 4}
      - {name: slow_kyc_review, when: 'client.kyc_approved_at != null and client.kyc_approved_at - client.kyc_submitted_at > 72h', points: -5}
    bands: {hot: 70, warm: 40, cold: 0}

routing:
  registration:
    - {name: vip, when: 'client.vip', assign: {desk: vip, strategy: least_loaded}}
    - {name: premium_ib, when: 'ib != null and ib.id in PREMIUM_IBS', assign: {desk: sales-senior}}
    - {name: hot, when: 'band.lead == "hot"', assign: {desk: sales-senior, strategy: least_loaded}}
    - {name: dach_warm, when: 'client.country in DACH and band.lead == "warm"', assign: {desk: sales-dach}}
    - {name: cis, when: 'client.language in ["ru", "uk"]', assign: {desk: sales-cis}}
    - {name: low_intent, when: 'client.source in LOW_INTENT_SOURCES and score.lead < 30', assign: {desk: sales-pool, strategy: pool}}
    - {name: returning, when: 'days_since(client.last_login_at) < 1 and client.phone_verified', assign: {desk: sales-callback}}
    - {name: everyone_else, when: 'true', assign: {desk: sales-general}}
"""

# ------------------------------------------------------------------ the same logic, by hand

TIER1 = frozenset({"DE", "CH", "GB", "AT", "NL", "SE", "NO", "DK", "LU"})
DACH = frozenset({"DE", "AT", "CH"})
HIGH_INTENT_SOURCES = frozenset({"referral", "seo_trading_guides", "webinar"})
LOW_INTENT_SOURCES = frozenset({"bonus_affiliate", "giveaway"})
PREMIUM_IBS = frozenset({"IB-1001", "IB-1007", "IB-1042"})
KYC_ADVANCED = frozenset({"kyc_approved", "funded"})
SPEAKERS = frozenset({"de", "en", "fr"})
CIS_LANGUAGES = frozenset({"ru", "uk"})
FREE_MAIL = re.compile(r"@(gmail|googlemail|yahoo|hotmail|outlook|live|gmx|web|mail)\.[a-z.]+$", re.IGNORECASE | re.ASCII)
ONE_DAY = timedelta(days=1)
TWO_DAYS = timedelta(days=2)
THREE_DAYS = timedelta(days=3)
SEVENTY_TWO_HOURS = timedelta(hours=72)


def hand_written(ctx: Context) -> Outcome:
    """Lead score, band and registration desk, as a competent engineer writes them by hand."""
    client = ctx["client"]
    ib = ctx["ib"]
    now = ctx["now"]
    country = client["country"]
    stage = client["stage"]
    registered_at = client["registered_at"]
    kyc_submitted_at = client["kyc_submitted_at"]
    language = client["language"]
    email = client["email"]
    last_login_at = client["last_login_at"]
    phone_verified = client["phone_verified"]

    score: float = 0
    if country in TIER1:
        score += 20
    if kyc_submitted_at is not None and kyc_submitted_at - registered_at <= ONE_DAY:
        score += 15
    if stage in KYC_ADVANCED:
        score += 10
    if ib is not None:
        quality = ib["quality"]
        if quality is not None and quality >= 50:
            score += quality * 0.2
    if phone_verified:
        score += 10
    if client["email_clicks"] >= 2 or client["email_opens"] >= 5:
        score += 7
    if client["source"] in HIGH_INTENT_SOURCES:
        score += 10
    if email is not None:
        if FREE_MAIL.search(email) is None:
            score += 5
        if email.endswith(".de"):
            score += 3
    if client["trading_experience"] == "experienced" or client["demo_trades"] >= 20:
        score += 10
    income = client["declared_income"]
    if income is not None and income >= 60000:
        score += 15 if income >= 150000 else 8
    if registered_at >= now - TWO_DAYS:
        score += 5
    if stage == "registered" and now - registered_at > SEVENTY_TWO_HOURS:
        score -= 20
    if last_login_at is not None and now - last_login_at <= THREE_DAYS:
        score += 6
    ftd_amount = client["ftd_amount"]
    if ftd_amount is not None and ftd_amount >= 1000:
        score += 25
    if client["balance"] > 500 and stage == "funded":
        score += 5
    if language is None:
        score -= 5
    elif language in SPEAKERS and country is not None and country not in DACH:
        score += 3
    campaign = client["campaign"]
    if campaign is not None and (campaign.startswith("bf_") or campaign == "webinar_2026"):
        score += 4
    kyc_approved_at = client["kyc_approved_at"]
    if kyc_approved_at is not None and kyc_submitted_at is not None and kyc_approved_at - kyc_submitted_at > SEVENTY_TWO_HOURS:
        score -= 5

    band = "hot" if score >= 70 else "warm" if score >= 40 else "cold"

    if client["vip"]:
        desk = "vip"
    elif (ib is not None and ib["id"] in PREMIUM_IBS) or band == "hot":
        desk = "sales-senior"
    elif country in DACH and band == "warm":
        desk = "sales-dach"
    elif language in CIS_LANGUAGES:
        desk = "sales-cis"
    elif client["source"] in LOW_INTENT_SOURCES and score < 30:
        desk = "sales-pool"
    elif last_login_at is not None and now - last_login_at < ONE_DAY and phone_verified:
        desk = "sales-callback"
    else:
        desk = "sales-general"
    return score, band, desk


# ------------------------------------------------------------------------ synthetic leads

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BERLIN_SUMMER = timezone(timedelta(hours=2))
COUNTRIES = ["DE", "AT", "CH", "GB", "NL", "SE", "FR", "ES", "IT", "PL", "RU", "UA", "BR", "ZA", "AE", "TR"]
LANGUAGES = ["de", "en", "fr", "es", "ru", "uk", "it", "pt"]
MAIL_DOMAINS = ["gmail.com", "GMAIL.COM", "yahoo.de", "web.de", "Outlook.com", "mail.ru",
                "acme-trading.de", "example.co.uk", "firm.com", "Hotmail.fr"]
SOURCES = ["referral", "seo_trading_guides", "webinar", "bonus_affiliate", "giveaway", "google_ads", "facebook"]
CAMPAIGNS = ["bf_2025", "bf_2026", "xmas_2025", "webinar_2026", "spring_push"]
STAGES = ["registered", "kyc_submitted", "kyc_approved", "funded"]
IBS = ["IB-1001", "IB-1007", "IB-1042", "IB-2001", "IB-2002", "IB-2003", "IB-2004"]


def _stamp(rng: random.Random, at: datetime) -> datetime:
    """Whole seconds (so that float epoch arithmetic is exact), in UTC or in +02:00."""
    at = at.replace(microsecond=0)
    return at.astimezone(BERLIN_SUMMER) if rng.random() < 0.3 else at


def make_leads(count: int, seed: int = 20260302) -> list[dict[str, Any]]:
    """``count`` evaluation contexts (``client``, ``ib``, ``trading``, ``now``) as a host builds them."""
    rng = random.Random(seed)
    contexts = []
    for i in range(count):
        registered = NOW - timedelta(seconds=rng.randrange(0, 10 * 86400))
        stage = rng.choices(STAGES, weights=[5, 3, 2, 2])[0]
        level = STAGES.index(stage)
        kyc_submitted = registered + timedelta(seconds=rng.randrange(600, 4 * 86400)) if level >= 1 else None
        kyc_approved = kyc_submitted + timedelta(seconds=rng.randrange(600, 5 * 86400)) if kyc_submitted and level >= 2 else None
        ftd = kyc_approved + timedelta(seconds=rng.randrange(600, 86400)) if kyc_approved and level >= 3 else None
        last_login = None if rng.random() < 0.3 else registered + (NOW - registered) * rng.random()
        client: dict[str, Any] = {
            "id": f"C{i:07d}",
            "registered_at": _stamp(rng, registered),
            "country": rng.choice(COUNTRIES),
            "region": None,
            "language": None if rng.random() < 0.1 else rng.choice(LANGUAGES),
            "email": None if rng.random() < 0.1 else f"lead{i}@{rng.choice(MAIL_DOMAINS)}",
            "phone_verified": rng.random() < 0.5,
            "ib_id": None,
            "source": None if rng.random() < 0.2 else rng.choice(SOURCES),
            "campaign": None if rng.random() < 0.5 else rng.choice(CAMPAIGNS),
            "manager_id": None,
            "stage": stage,
            "kyc_submitted_at": kyc_submitted and _stamp(rng, kyc_submitted),
            "kyc_approved_at": kyc_approved and _stamp(rng, kyc_approved),
            "ftd_at": ftd and _stamp(rng, ftd),
            "ftd_amount": Decimal(rng.randrange(10000, 500000)) / 100 if ftd else None,
            "balance": Decimal(rng.randrange(0, 2000000)) / 100 if ftd else 0,
            "last_login_at": last_login and _stamp(rng, last_login),
            "last_trade_at": None,
            "last_deposit_at": ftd and _stamp(rng, ftd),
            "email_opens": rng.randrange(0, 12),
            "email_clicks": rng.randrange(0, 4),
            "status": "new",
            "desk_id": None,
            "agent_id": None,
            "vip": rng.random() < 0.02,
            "declared_income": None if rng.random() < 0.4 else Decimal(rng.randrange(5, 300) * 1000),
            "trading_experience": rng.choice([None, "none", "some", "experienced"]),
            "demo_trades": rng.randrange(0, 40),
        }
        ib = None
        if rng.random() < 0.4:
            ib = {"id": rng.choice(IBS), "quality": rng.randrange(0, 101), "agent_id": None, "manager_id": None}
            client["ib_id"] = ib["id"]
        contexts.append({"client": client, "ib": ib, "trading": None, "now": NOW})
    return contexts


# ------------------------------------------------------------------------------- the runners

Leads = list[dict[str, Any]]
Runner = Callable[[Leads], list[Any]]


def run_hand_written(contexts: Leads) -> list[Outcome]:
    return [hand_written(ctx) for ctx in contexts]


def run_evaluate(rules: crmcore.RuleSet) -> Runner:
    """What a host does per lead: evaluate, then read the lead score and the desk."""
    evaluate = rules.evaluate

    def run(contexts: Leads) -> list[tuple[float, str | None]]:
        outcomes = []
        for ctx in contexts:
            ev = evaluate(ctx)
            route = ev.route
            outcomes.append((ev.scores["lead"], route.desk if route else None))
        return outcomes

    return run


def run_evaluate_many(rules: crmcore.RuleSet) -> Runner:
    """The batch API, then the same two reads per lead."""

    def run(contexts: Leads) -> list[tuple[float, str | None]]:
        outcomes = []
        for ev in rules.evaluate_many(contexts):
            route = ev.route
            outcomes.append((ev.scores["lead"], route.desk if route else None))
        return outcomes

    return run


# country is required (a non-null field without default: a record without it is an EvaluationError)
NULLABLE = ("language", "email", "source", "campaign", "kyc_submitted_at", "kyc_approved_at",
            "last_login_at", "ftd_amount", "declared_income", "trading_experience")


def edge_variants(contexts: Leads, count: int = 200) -> Leads:
    """Copies of the first ``count`` leads with one optional value set to null each, without an IB
    or with an IB of unknown quality, and with values exactly on each rule's threshold: the
    null rules and the boundaries must agree too."""
    variants: Leads = []
    for ctx in contexts[:count]:
        client, registered = ctx["client"], ctx["client"]["registered_at"]
        for name in NULLABLE:
            variants.append({**ctx, "client": {**client, name: None}})
        variants.append({**ctx, "ib": None})
        if ctx["ib"] is not None:
            variants.append({**ctx, "ib": {**ctx["ib"], "quality": None, "id": None}})
            variants.append({**ctx, "ib": {**ctx["ib"], "quality": 50}})
        on_threshold: dict[str, Any] = {
            "kyc_submitted_at": registered + timedelta(hours=24),
            "registered_at": NOW - timedelta(days=2),
            "last_login_at": NOW - timedelta(days=3),
            "email_clicks": 2,
            "email_opens": 5,
            "demo_trades": 20,
            "declared_income": Decimal(60000),
            "ftd_amount": Decimal("1000.00"),
            "balance": Decimal("500.00"),
        }
        for name, value in on_threshold.items():
            variants.append({**ctx, "client": {**client, name: value}})
        variants.append({**ctx, "client": {**client, "registered_at": NOW - timedelta(hours=72), "stage": "registered"}})
        variants.append({**ctx, "client": {**client, "declared_income": 150000}})
        variants.append({**ctx, "client": {**client, "last_login_at": (NOW - timedelta(days=1)).astimezone(BERLIN_SUMMER)}})
        variants.append({**ctx, "client": {**client, "kyc_submitted_at": registered,
                                            "kyc_approved_at": registered + timedelta(hours=72)}})
    return variants


def check_identical(rules: crmcore.RuleSet, contexts: Leads) -> None:
    """Before any timing: crmcore (evaluate and evaluate_many) and the hand-written rules give
    the same score, band and desk for every lead, and for null variants of some of them."""
    contexts = contexts + edge_variants(contexts)
    expected = run_hand_written(contexts)
    batches = {
        "rules.evaluate": [rules.evaluate(ctx) for ctx in contexts],
        "rules.evaluate_many": rules.evaluate_many(contexts),
    }
    for name, evaluations in batches.items():
        for i, (want, ev) in enumerate(zip(expected, evaluations, strict=True)):
            route = ev.route
            have = (ev.scores["lead"], ev.bands["lead"], route.desk if route else None)
            if have != want:
                raise SystemExit(f"{name} disagrees with the hand-written rules on lead {i}: {have} != {want}\n{contexts[i]}")


def measure(variants: Mapping[str, Runner], contexts: Leads, repeat: int) -> dict[str, list[float]]:
    """``repeat`` rounds; each round times every variant once over all leads (``perf_counter``,
    garbage collection paused). Rounds alternate the order, so that a busy neighbour on a
    shared machine slows all variants alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeat):
        order = list(variants.items())
        if round_ % 2:
            order.reverse()
        for name, run in order:
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                run(contexts)
                samples[name].append(time.perf_counter() - start)
            finally:
                gc.enable()
    return samples


# ---------------------------------------------------------------------- the 1,000-rule file

SCORE_TEMPLATES = [
    'client.country in ["{c1}", "{c2}", "{c3}"]',
    "client.balance > {n}",
    "client.email_clicks >= {k} or client.email_opens >= {k2}",
    "client.kyc_submitted_at - client.registered_at <= {h}h",
    "days_since(client.last_login_at) <= {k}",
    'client.email matches "(?i)@(example{k}|corp{k2})\\\\.[a-z]+$"',
    'endswith(client.email, ".{tld}") and client.phone_verified',
    "client.ftd_amount >= {n} and not (client.country in DACH)",
    'client.source == "src{k}" or client.campaign == "cmp{k2}"',
    "coalesce(ib.quality, 0) * 0.{k} >= {k2}",
    'hours_since(client.registered_at) > {h} and client.stage == "registered"',
    "client.language != null and lower(client.language) in LANGS",
    "len(client.email) > {k2} and client.declared_income >= {n}",
    "round(client.balance / {k}) >= {k2} or abs(client.demo_trades - {k}) < 3",
    'if client.vip then true else startswith(client.campaign, "p{k}_")',
    "client.registered_at >= now - {k}d and client.kyc_approved_at == null",
]
TRIGGER_TEMPLATES = [
    'client.stage == "funded" and days_since(client.last_trade_at) >= {k}',
    "client.balance > {n} and trading.margin_level < {k2}0",
    "deposits.count(30d) < deposits.count(30d, 30d) and client.balance > {n}",
    'client.stage == "registered" and hours_since(client.registered_at) >= {h}',
    "withdrawals.failed({k}d) >= 1 or trading.margin_level < 100",
]


def big_rule_file(score_rules: int = 700, routes: int = 200, triggers: int = 100, seed: int = 7) -> str:
    """A rule file with ``score_rules + routes + triggers`` rules of varied expressions."""
    rng = random.Random(seed)

    def fill(template: str) -> str:
        return template.format(
            c1=rng.choice(COUNTRIES), c2=rng.choice(COUNTRIES), c3=rng.choice(COUNTRIES),
            n=rng.randrange(100, 100000), k=rng.randrange(1, 9), k2=rng.randrange(1, 30),
            h=rng.randrange(1, 200), tld=rng.choice(["de", "com", "ru", "fr"]),
        )

    def quote(expression: str) -> str:
        return "'" + expression.replace("'", "''") + "'"

    lines = [
        "version: 1",
        "lists:",
        '  DACH: ["DE", "AT", "CH"]',
        '  LANGS: ["de", "en", "fr", "es"]',
        "schema:",
        "  client:",
        "    vip: {type: bool, default: false}",
        "    declared_income: number?",
        "    demo_trades: {type: int, default: 0}",
        "desks:",
        *(f"  - {{id: desk{d}, kind: sales}}" for d in range(10)),
        "  - {id: retention, kind: retention}",
        "scores:",
        "  lead:",
        "    rules:",
    ]
    for i in range(score_rules):
        points = quote(f"client.balance * 0.00{rng.randrange(1, 9)}") if i % 10 == 0 else str(rng.randrange(-10, 25))
        lines.append(f"      - {{name: r{i}, when: {quote(fill(SCORE_TEMPLATES[i % len(SCORE_TEMPLATES)]))}, points: {points}}}")
    lines.append("    bands: {hot: 200, warm: 100, cold: 0}")
    lines += ["routing:", "  registration:"]
    for i in range(routes - 1):
        when = fill(SCORE_TEMPLATES[i % len(SCORE_TEMPLATES)])
        if i % 3 == 0:
            when = f'band.lead == "{rng.choice(["hot", "warm"])}" and ({when})'
        elif i % 3 == 1:
            when = f"score.lead >= {rng.randrange(0, 300)} and ({when})"
        lines.append(f"    - {{name: route{i}, when: {quote(when)}, assign: {{desk: desk{i % 10}}}}}")
    lines.append("    - {name: everyone_else, when: 'true', assign: {desk: desk0}}")
    lines.append("triggers:")
    for i in range(triggers):
        when = fill(TRIGGER_TEMPLATES[i % len(TRIGGER_TEMPLATES)])
        lines.append(f"  - {{name: t{i}, when: {quote(when)}, queue: q{i % 5}, priority: 'client.balance', cooldown: {rng.randrange(1, 30)}d}}")
    return "\n".join(lines) + "\n"


COLD_LOAD = """
import sys, time
import crmcore
start = time.perf_counter()
crmcore.load_rules(sys.argv[1])
print(time.perf_counter() - start)
"""


def time_load(text: str, repeat: int = 3) -> tuple[float, float, crmcore.RuleSet]:
    """Loading (parse, check, compile) a rule file written to a temp dir: (best of ``repeat``
    in this process, once in a fresh interpreter as ``crmcore check`` does, import excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(text, encoding="utf-8")
        cold = float(subprocess.run([sys.executable, "-c", COLD_LOAD, str(path)], check=True,
                                    capture_output=True, text=True).stdout)
        times = []
        rules = None
        for _ in range(repeat):
            start = time.perf_counter()
            rules = crmcore.load_rules(path)
            times.append(time.perf_counter() - start)
    assert rules is not None
    return min(times), cold, rules


# ------------------------------------------------------------------------------------- main


def table(rows: Iterable[tuple[str, ...]]) -> str:
    rows = list(rows)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=50_000, help="number of synthetic leads (default 50,000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds; the best run of each variant counts (default 7)")
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--no-load", action="store_true", help="skip the 1,000-rule load timing")
    args = parser.parse_args(argv)

    print(f"crmcore {crmcore.__version__}, Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    contexts = make_leads(args.leads, args.seed)
    rules = crmcore.loads(RULES, "bench/rules_bench.py:RULES")
    check_identical(rules, contexts)
    bands: Counter[str | None] = Counter()
    desks: Counter[str | None] = Counter()
    for _score, band, desk in run_hand_written(contexts):
        bands[band] += 1
        desks[desk] += 1
    print(f"{args.leads:,} leads (seed {args.seed}): crmcore and hand-written agree on every score, band and desk "
          f"(and on {len(edge_variants(contexts)):,} variants with a null or threshold value)")
    print("  bands: " + ", ".join(f"{k} {v}" for k, v in bands.most_common()))
    print("  desks: " + ", ".join(f"{k} {v}" for k, v in desks.most_common()))
    pressure = cpu_pressure()
    if pressure is not None and pressure > 5:
        print(f"  warning: the machine is busy (CPU pressure {pressure:.0f}% over 10 s): absolute figures will be low")
    print()

    variants: dict[str, Runner] = {
        "hand-written": run_hand_written,
        "rules.evaluate": run_evaluate(rules),
        "rules.evaluate_many": run_evaluate_many(rules),
    }
    samples = measure(variants, contexts, args.repeat)
    hand = samples["hand-written"]
    rows = [("variant", "leads/s", "us/lead", "ratio", "paired")]
    for name, times in samples.items():
        fastest = min(times)
        paired = statistics.median(h / t for h, t in zip(hand, times, strict=True))
        rows.append((name, f"{args.leads / fastest:,.0f}", f"{1e6 * fastest / args.leads:.2f}",
                     f"{min(hand) / fastest:.2f}", f"{paired:.2f}"))
    print(f"best of {args.repeat} rounds (ratio = crmcore / hand-written in leads/s, from the best runs; "
          "paired = median over rounds of the same ratio):")
    print(table(rows))
    ratio = min(hand) / min(samples["rules.evaluate"])
    print(f"\ncrmcore (rules.evaluate) / hand-written = {ratio:.2f}  (goal >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})")

    if not args.no_load:
        fastest, cold, big = time_load(big_rule_file())
        count = sum(len(s.rules) for s in big.scores.values()) + len(big.routing["registration"]) + len(big.triggers)
        print(f"\nload_rules of a {count:,}-rule file ({len(big.exprs):,} expressions): best of 3 {fastest:.3f} s, "
              f"in a fresh interpreter {cold:.3f} s  (goal < 1 s: {'met' if fastest < 1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

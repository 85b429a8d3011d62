"""Desk strategies: round robin, least loaded, smooth weighted round robin."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from crmcore.routing.strategies import least_loaded, round_robin, weighted

AGENTS = ["a", "b", "c", "d"]


def _run_rr(eligibility: list[set[str]], agents: list[str] = AGENTS) -> list[str | None]:
    pointer: str | None = None
    picks: list[str | None] = []
    for eligible in eligibility:
        picked, pointer = round_robin(agents, eligible, pointer)
        picks.append(picked)
    return picks


def _run_weighted(
    agents: list[str], weights: dict[str, float], eligibility: list[set[str]]
) -> list[str | None]:
    current: dict[str, float] = {}
    picks: list[str | None] = []
    for eligible in eligibility:
        picked, current = weighted(agents, eligible, weights, current)
        picks.append(picked)
    return picks


def test_round_robin_from_none_goes_in_id_order() -> None:
    everyone = set(AGENTS)
    assert _run_rr([everyone] * 4, ["c", "a", "d", "b"]) == ["a", "b", "c", "d"]


def test_round_robin_wraps_around() -> None:
    assert round_robin(AGENTS, set(AGENTS), "d") == ("a", "a")
    assert round_robin(AGENTS, {"a", "b"}, "c") == ("a", "a")


def test_round_robin_pointer_between_ids_and_predicate() -> None:
    # a pointer naming an agent no longer on the desk continues after its place
    assert round_robin(AGENTS, lambda a: True, "bb") == ("c", "c")


def test_skipped_agent_keeps_its_place() -> None:
    everyone = set(AGENTS)
    # b is skipped once; when eligible again it waits for its turn, no burst
    picks = _run_rr([everyone, {"a", "c", "d"}, everyone, everyone, everyone])
    assert picks == ["a", "c", "d", "a", "b"]


def test_agent_back_from_leave_gets_no_catch_up() -> None:
    everyone = set(AGENTS)
    on_leave = {"a", "c", "d"}
    picks = _run_rr([on_leave] * 6 + [everyone] * 8)
    assert picks[:6] == ["a", "c", "d", "a", "c", "d"]
    # back: one turn per rotation, like everyone else
    assert picks[6:] == ["a", "b", "c", "d", "a", "b", "c", "d"]


def test_round_robin_nobody_eligible_keeps_pointer() -> None:
    assert round_robin(AGENTS, set(), "b") == (None, "b")
    assert round_robin(AGENTS, lambda a: False, None) == (None, None)
    assert round_robin([], set(AGENTS), "b") == (None, "b")


def test_least_loaded_picks_fewest_open_ties_to_lower_id() -> None:
    counts = {"a": 3, "b": 1, "c": 1, "d": 0}
    assert least_loaded(AGENTS, {"a", "b", "c"}, counts) == "b"
    assert least_loaded(["c", "b"], lambda a: True, counts) == "b"
    assert least_loaded(AGENTS, set(AGENTS), counts) == "d"
    assert least_loaded(AGENTS, {"x"}, counts) is None


def test_weighted_is_the_nginx_sequence() -> None:
    weights: dict[str, float] = {"a": 5, "b": 1, "c": 1}
    picks = _run_weighted(["a", "b", "c"], weights, [{"a", "b", "c"}] * 14)
    assert picks == list("aabacaa") * 2


def test_weighted_ties_to_lower_id() -> None:
    picks = _run_weighted(["b", "a"], {"a": 1, "b": 1}, [{"a", "b"}] * 4)
    assert picks == ["a", "b", "a", "b"]


def test_weighted_nobody_eligible() -> None:
    current = {"a": 2.0, "b": -2.0}
    assert weighted(["a", "b"], set(), {"a": 1, "b": 1}, current) == (None, current)
    assert weighted(["a", "b"], {"a"}, {"a": 0, "b": 1}, current)[0] is None


def test_weighted_back_from_leave_gets_no_catch_up() -> None:
    agents = ["a", "b", "c"]
    weights: dict[str, float] = {"a": 1, "b": 1, "c": 1}
    away = _run_weighted(agents, weights, [{"a", "b"}] * 9 + [set(agents)] * 6)
    assert Counter(away[:9])["c"] == 0
    # on return c gets its share (2 of 6), not the 3 it missed
    assert Counter(away[9:]) == {"a": 2, "b": 2, "c": 2}


@given(
    st.lists(st.integers(1, 5), min_size=2, max_size=6),
)
def test_weighted_share_within_one(ws: list[int]) -> None:
    agents = [f"agent{i}" for i in range(len(ws))]
    weights: dict[str, float] = {a: float(w) for a, w in zip(agents, ws, strict=True)}
    total = sum(ws)
    picks = _run_weighted(agents, weights, [set(agents)] * (10 * total))
    counts = Counter(picks)
    for agent in agents:
        assert abs(counts[agent] - 10 * weights[agent]) <= 1


@given(
    st.integers(2, 6).flatmap(
        lambda n: st.tuples(
            st.just([f"agent{i}" for i in range(n)]),
            st.sets(st.sampled_from([f"agent{i}" for i in range(n)])),
            st.lists(st.sets(st.sampled_from([f"agent{i}" for i in range(n)])), max_size=60),
        )
    )
)
def test_round_robin_fair_among_always_eligible(
    case: tuple[list[str], set[str], list[set[str]]],
) -> None:
    agents, always, sometimes = case
    eligibility = [always | extra for extra in sometimes]
    picks = _run_rr(eligibility, agents)
    for picked, eligible in zip(picks, eligibility, strict=True):
        assert picked in eligible if eligible else picked is None
    counts = Counter(p for p in picks if p in always)
    if always:
        assert max(counts[a] for a in always) - min(counts[a] for a in always) <= 1

"""Desk strategies: pure functions over explicit state.

Each strategy picks one agent of a desk. Nothing here is global, random or
reads the clock: the caller passes the desk's agents, an eligibility test and
the strategy's state, and gets back the pick and the new state to persist.

Agents are always considered in ``sorted`` id order (duplicates ignored), so
ties go to the lower id. ``eligible`` is either a predicate or a set of ids.

- :func:`round_robin`: one pointer per desk. The next eligible agent strictly
  after the pointer (wrapping) is picked and the pointer moves to them. The
  pointer is an id, not an index, so skipped agents keep their place: an agent
  skipped while ineligible is picked when the rotation next reaches them while
  eligible, never "made up" for. An agent back from leave therefore rejoins
  the rotation where their id sits, with no catch-up burst. ``None`` means
  before the lowest id. The pointer may name an agent no longer on the desk;
  the rotation continues after where that id would sort.
- :func:`least_loaded`: fewest open clients, ties to the lower id.
- :func:`weighted`: smooth weighted round robin (nginx) over the eligible
  agents, see its docstring for leave and return.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = ["Eligible", "least_loaded", "round_robin", "weighted"]

Eligible = Callable[[str], bool] | set[str] | frozenset[str]
"""A predicate on agent ids, or the set of eligible ids."""


def _predicate(eligible: Eligible) -> Callable[[str], bool]:
    if isinstance(eligible, set | frozenset):
        return eligible.__contains__
    return eligible


def _ordered(agent_ids: Iterable[str]) -> list[str]:
    return sorted(set(agent_ids))


def round_robin(
    agent_ids: Sequence[str], eligible: Eligible, pointer: str | None
) -> tuple[str | None, str | None]:
    """Pick the first eligible agent strictly after ``pointer``, wrapping.

    Returns ``(picked, new_pointer)``: the new pointer is the picked agent, or
    the old pointer unchanged when nobody is eligible (picked is ``None``).
    """
    ordered = _ordered(agent_ids)
    is_eligible = _predicate(eligible)
    if pointer is None:
        rotation = ordered
    else:
        after = [a for a in ordered if a > pointer]
        rotation = after + [a for a in ordered if a <= pointer]
    for agent in rotation:
        if is_eligible(agent):
            return agent, agent
    return None, pointer


def least_loaded(
    agent_ids: Sequence[str], eligible: Eligible, open_counts: Mapping[str, int]
) -> str | None:
    """The eligible agent with the fewest open clients (missing = 0), ties to the lower id."""
    is_eligible = _predicate(eligible)
    candidates = [a for a in _ordered(agent_ids) if is_eligible(a)]
    if not candidates:
        return None
    return min(candidates, key=lambda a: (open_counts.get(a, 0), a))


def weighted(
    agent_ids: Sequence[str],
    eligible: Eligible,
    weights: Mapping[str, float],
    current: Mapping[str, float],
) -> tuple[str | None, dict[str, float]]:
    """Smooth weighted round robin (nginx) over the eligible agents.

    A missing weight counts as 1; an agent with weight <= 0 is never picked
    (treated as ineligible). A missing ``current`` counts as 0.

    One step: every eligible agent's current += its weight; the one with the
    largest current is picked (ties to the lower id); its current -= the total
    eligible weight. Returns ``(picked, new_current)``; ``new_current`` has an
    entry for every agent of the desk and is ``current``'s content for nobody
    eligible (picked ``None``).

    Leave and return: an agent who is ineligible at a step has its current
    reset to 0, so it neither accrues credit while away nor keeps debt or
    credit from before. When it becomes eligible again it rejoins like a new
    agent: it gets its weight's share from then on, with no catch-up burst for
    the assignments it missed. (While the eligible set stays the same, the
    sequence is exactly nginx's.)
    """
    ordered = _ordered(agent_ids)
    is_eligible = _predicate(eligible)

    def weight(agent: str) -> float:
        return weights.get(agent, 1.0)

    candidates = [a for a in ordered if is_eligible(a) and weight(a) > 0]
    if not candidates:
        return None, {a: current.get(a, 0.0) for a in ordered}
    chosen = set(candidates)
    new = {a: (current.get(a, 0.0) + weight(a) if a in chosen else 0.0) for a in ordered}
    picked = min(candidates, key=lambda a: (-new[a], a))
    new[picked] -= sum(weight(a) for a in candidates)
    return picked, new

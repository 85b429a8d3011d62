"""Rule tests (SPEC §9): ``*_test.yaml`` files that state a clock, a client and what the rules
must make of them — for ``crmcore test`` and the pytest plugin.

A test file::

    rules: ../rules                 # relative to this file (a list of paths works too)
    now: 2026-03-01T12:00:00Z       # the cases' clock (a case may give its own `now`)
    cases:
      - name: German lead goes to the DACH desk
        client: {country: DE, language: de, registered_at: 2026-03-01T10:00:00Z}
        ib: {id: IB1, quality: 90}                    # optional
        trading: {balance: 900, margin_level: 120}    # optional: the last account snapshot
        events: [{type: trade, volume: 1, pnl: -50, ago: 3d}]   # optional history
        expect:                                       # every key optional
          score: {lead: 38}
          band: {lead: cold}
          route: {rule: dach, desk: sales-dach, agent: a04}
          triggers: []                                # exactly these fire
          notifications: [{kind: assigned, recipient: a04}, {kind: assigned_to_team, recipient: m-dach}]

How a case runs (:func:`run_case`), on a fresh :class:`~crmcore.Engine` with a
:class:`~crmcore.MemoryStore` — no other clients, every rotation at its start:

1. The IB (``ib``) is known to the store.
2. The client registers at ``registered_at`` (default: the earliest of their timestamps and
   events, else ``now``) with every field the case gives (the record of
   :func:`crmcore.case.case_context`: built-in and schema defaults, ``stage`` implied by the
   timestamps): scores and registration routing see the client as the case describes them.
3. A client the case gives as funded (``ftd_at``) makes the first deposit at ``ftd_at``: a
   ``client_updated`` setting ``ftd_at``, ``ftd_amount`` and the stage, which hands the client
   over by the ``ftd`` rules (it adds no deposit to the activity windows).
4. The ``events`` are handled in time order, as the engine handles events: they change the
   client (``last_*_at``, balance, stage, e-mail counters), a first completed deposit is the
   FTD, ``on:`` triggers fire and condition triggers are re-checked.
5. ``scan(now)``: first-contact SLA checks and the condition triggers.

Then ``score`` and ``band`` are the client's at ``now`` (as the engine then keeps them),
``route`` the client's latest routing by the rules (the registration, or the FTD hand-over;
not a reassignment after an SLA breach at the scan),
``triggers`` the triggers that fired during 2-5 (cooldowns allowing), ``notifications``
everything the case notified.
"""

from crmcore.ruletest.files import (
    TEST_FILE_SUFFIXES,
    Expect,
    RuleTest,
    RuleTestError,
    discover,
    is_test_file,
    load_test_file,
)
from crmcore.ruletest.report import Coverage, Report, coverage, junit_xml, run_tests
from crmcore.ruletest.runner import Exercised, Outcome, run_case

__all__ = [
    "TEST_FILE_SUFFIXES", "Coverage", "Exercised", "Expect", "Outcome", "Report", "RuleTest",
    "RuleTestError", "coverage", "discover", "is_test_file", "junit_xml", "load_test_file",
    "run_case", "run_tests",
]

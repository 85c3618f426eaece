"""pytest plugin: how many Citus tests ran or were skipped, and why, as one line of the
terminal summary (``citus tests: 18 ran (18 passed)`` or ``citus tests: 18 skipped (citus
extension is not installed ...)``), so a green run without Citus says so.

A Citus test is one marked ``citus``; a test using the ``citus_cluster`` fixture (directly or
through ``citus_dbs``) gets the mark here, so none is missed.
"""

from collections import Counter
from typing import Dict

import pytest

CITUS_FIXTURE = 'citus_cluster'


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if CITUS_FIXTURE in getattr(item, 'fixturenames', ()) and item.get_closest_marker('citus') is None:
            item.add_marker(pytest.mark.citus)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason[len('Skipped: '):] if reason.startswith('Skipped: ') else reason


def citus_outcomes(stats: Dict[str, list]) -> Dict[str, str]:
    """nodeid -> 'passed' | 'failed' | 'error' | 'skipped: <reason>' of the Citus tests."""
    out: Dict[str, str] = {}
    for key in ('passed', 'failed', 'error', 'skipped', 'xfailed', 'xpassed'):
        for report in stats.get(key, ()):
            if 'citus' not in getattr(report, 'keywords', {}):
                continue
            if key == 'skipped':
                out.setdefault(report.nodeid, 'skipped: ' + _skip_reason(report))
            elif key == 'passed' and report.when != 'call':
                continue
            else:
                out[report.nodeid] = key  # a failure in setup or teardown outranks a pass
    return out


def summary_line(outcomes: Dict[str, str]) -> str:
    if not outcomes:
        return 'citus tests: none selected'
    skipped = Counter(v[len('skipped: '):] for v in outcomes.values() if v.startswith('skipped: '))
    ran = Counter(v for v in outcomes.values() if not v.startswith('skipped: '))
    parts = []
    if ran:
        parts.append('%d ran (%s)' % (sum(ran.values()), ', '.join(
            '%d %s' % (n, k) for k, n in sorted(ran.items()))))
    if skipped:
        parts.append('%d skipped (%s)' % (sum(skipped.values()), '; '.join(
            '%d: %s' % (n, reason) if len(skipped) > 1 else reason for reason, n in sorted(skipped.items()))))
    return 'citus tests: ' + ', '.join(parts)


def pytest_terminal_summary(terminalreporter) -> None:
    terminalreporter.write_line(summary_line(citus_outcomes(terminalreporter.stats)))

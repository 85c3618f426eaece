# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which manifest rows a run copies or a status report lists (the old tool's rules)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
from datetime import date
from typing import List, Optional

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import SelectionError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow

_DATE_RE = re.compile(r'^\d{4}-\d{2}-\d{2}$')


def parse_month_start(value: Optional[str], flag: str) -> Optional[str]:
    """Validate YYYY-MM-DD and truncate it to the first of the month, as the old tool did."""
    if value is None or value == '':
        return None
    text = str(value).strip()
    if not _DATE_RE.match(text):
        raise SelectionError("invalid %s '%s': expected a date as YYYY-MM-DD" % (flag, value))
    try:
        parsed = date(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    except ValueError as exc:
        raise SelectionError("invalid %s '%s': %s" % (flag, value, exc))
    return parsed.replace(day=1).isoformat()


def date_matches(row_date: Optional[str], start: Optional[str], end: Optional[str]) -> bool:
    """Date window: both: start <= d < end (dateless out); start only: dateless or d >= start;
    end only: d < end (dateless out)."""
    if start and end:
        return row_date is not None and start <= row_date < end
    if start:
        return row_date is None or row_date >= start
    if end:
        return row_date is not None and row_date < end
    return True


def select_for_copy(rows: List[ManifestRow], start: Optional[str] = None,
                    end: Optional[str] = None, table: Optional[str] = None,
                    retry_errors: bool = False) -> List[ManifestRow]:
    """Rows a ``migrate`` run copies, in manifest order (parents before children)."""
    if start and end and start >= end:
        raise SelectionError('--start-date %s is not before --end-date %s' % (start, end))
    if table is not None:
        named = [r for r in rows if r.source_table == table]
        if not named:
            raise SelectionError("table '%s' is not in the manifest" % table)
        if len(named) > 1:
            raise SelectionError("table '%s' appears %d times in the manifest (ids %s)"
                                 % (table, len(named), ', '.join(str(r.id) for r in named)))
        if named[0].migrated:
            raise SelectionError("table '%s' is already migrated" % table)
        return named
    if start or end:
        check_row_dates(rows)
    return [r for r in rows
            if not r.migrated and (retry_errors or not r.errored)
            and date_matches(r.date, start, end)]


def check_row_dates(rows: List[ManifestRow]) -> None:
    """A date window needs valid row dates: a hand-edited manifest may hold anything
    (another text, an integer), which would otherwise be compared as text, or not at all."""
    bad = []
    for row in rows:
        if row.date is None:
            continue
        ok = isinstance(row.date, str) and bool(_DATE_RE.match(row.date))
        if ok:
            try:
                date(int(row.date[0:4]), int(row.date[5:7]), int(row.date[8:10]))
            except ValueError:
                ok = False
        if not ok:
            bad.append('%r (id %d, %s)' % (row.date, row.id, row.source_table))
    if bad:
        raise SelectionError('the manifest has %d row(s) with a date that is not YYYY-MM-DD, '
                             'so a date window cannot be applied: %s%s' % (
                                 len(bad), ', '.join(bad[:5]),
                                 ' (and %d more)' % (len(bad) - 5) if len(bad) > 5 else ''))


def select_for_status(rows: List[ManifestRow], start: Optional[str] = None,
                      end: Optional[str] = None, migrated: bool = False,
                      errored: bool = False) -> List[ManifestRow]:
    """Rows a ``status`` report covers: date window, then -M / -E filters."""
    if start or end:
        check_row_dates(rows)
    out = [r for r in rows if date_matches(r.date, start, end)]
    if migrated:
        out = [r for r in out if r.migrated]
    if errored:
        out = [r for r in out if r.errored]
    return out

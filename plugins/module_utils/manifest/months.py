# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``status months``: totals per month, the unit the runbook selects work by
(``--start-date`` / ``--end-date``). Tables without a date (ICDS's non-monthly ones) come first."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from typing import Dict, List, Optional, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import fmt_bytes
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow

NO_DATE = '(no date)'
HEADERS = ['Month', 'Tables', 'Migrated', 'Running', 'Errored', 'Left', 'Rows Copied', 'Bytes Copied']
SOURCE_HEADERS = ['Source Done', 'Source Left', 'Source Errored']


def month_of(row: ManifestRow) -> str:
    return row.date[:7] if isinstance(row.date, str) and len(row.date) >= 7 else NO_DATE


def month_totals(rows: List[ManifestRow],
                 sizes: Optional[Dict[str, Tuple[int, int]]] = None) -> List[Dict[str, object]]:
    """One dict per month. ``left`` counts tables neither migrated nor errored (running
    included). With ``sizes`` (source table -> (rows, bytes on disk)) the source bytes of the
    tables done, left and errored."""
    months: Dict[str, Dict[str, object]] = {}
    for row in rows:
        key = month_of(row)
        m = months.setdefault(key, {'month': key, 'tables': 0, 'migrated': 0, 'running': 0,
                                    'errored': 0, 'left': 0, 'rows_copied': 0, 'bytes_copied': 0})
        if sizes is not None and 'source_bytes_done' not in m:
            m.update(source_bytes_done=0, source_bytes_left=0, source_bytes_errored=0)
        state = row.status_word()
        m['tables'] += 1
        size = sizes.get(row.source_table, (0, 0))[1] if sizes is not None else 0
        if state == 'migrated':
            m['migrated'] += 1
            m['rows_copied'] += row.rows_copied or 0
            m['bytes_copied'] += row.bytes_copied or 0
            bucket = 'source_bytes_done'
        elif state == 'errored':
            m['errored'] += 1
            bucket = 'source_bytes_errored'
        else:
            m['left'] += 1
            m['running'] += state == 'running'
            bucket = 'source_bytes_left'
        if sizes is not None:
            m[bucket] += size
    return [months[k] for k in sorted(months, key=lambda k: (k != NO_DATE, k))]


def month_cells(totals: List[Dict[str, object]]) -> Tuple[List[str], List[List[str]]]:
    with_sizes = bool(totals) and 'source_bytes_done' in totals[0]
    headers = HEADERS + (SOURCE_HEADERS if with_sizes else [])
    cells = []
    for m in totals:
        line = [m['month'], str(m['tables']), str(m['migrated']), str(m['running']),
                str(m['errored']), str(m['left']), str(m['rows_copied']), fmt_bytes(m['bytes_copied'])]
        if with_sizes:
            line += [fmt_bytes(m['source_bytes_done']), fmt_bytes(m['source_bytes_left']),
                     fmt_bytes(m['source_bytes_errored'])]
        cells.append(line)
    return headers, cells

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``status`` report: stats and the fixed-width table list of the old tool."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from typing import Dict, List, Optional, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow

LIST_HEADERS = ['Source Table', 'Table Date', 'Migrated', 'Errored', 'Target Table']


def _pct(part: int, total: int) -> float:
    return round(100.0 * part / total, 1) if total else 0.0


def stats(rows: List[ManifestRow]) -> Dict[str, object]:
    total = len(rows)
    migrated = sum(1 for r in rows if r.migrated)
    errored = sum(1 for r in rows if r.errored and not r.migrated)
    running = sum(1 for r in rows if r.status_word() == 'running')
    return {
        'total': total, 'migrated': migrated, 'migrated_pct': _pct(migrated, total),
        'errored': errored, 'errored_pct': _pct(errored, total), 'running': running,
        'pending': total - migrated - errored - running,
        'rows_copied': sum(r.rows_copied or 0 for r in rows if r.migrated),
        'bytes_copied': sum(r.bytes_copied or 0 for r in rows if r.migrated),
    }


def format_stats(data: Dict[str, object]) -> str:
    lines = [
        'Total: %d' % data['total'],
        'Migrated: %d (%.1f%%)' % (data['migrated'], data['migrated_pct']),
        'Errored: %d (%.1f%%)' % (data['errored'], data['errored_pct']),
    ]
    if data['running']:
        lines.append('Running: %d' % data['running'])
    return '\n'.join(lines)


def _flag(value: bool) -> str:
    return 'True' if value else 'False'


def list_rows(rows: List[ManifestRow],
              sizes: Optional[Dict[str, Tuple[int, int]]] = None) -> Tuple[List[str], List[List[str]]]:
    """Header and cells; with ``sizes`` (source row estimates) adds Rows and % of data."""
    headers = list(LIST_HEADERS)
    total = 0
    if sizes is not None:
        headers += ['Rows', '% of Data']
        total = sum(sizes.get(r.source_table, (0, 0))[0] for r in rows)
    cells = []
    for r in rows:
        migrated = 'running' if r.status_word() == 'running' else _flag(r.migrated)
        if not r.migrated and r.segments_total:  # a split table in progress
            migrated += ' %d/%d segments' % (r.segments_done or 0, r.segments_total)
        line = [r.source_table, r.date or '', migrated, _flag(r.errored and not r.migrated),
                r.target]
        if sizes is not None:
            count = sizes.get(r.source_table, (0, 0))[0]
            line += [str(count), '%.2f%%' % _pct_exact(count, total)]
        cells.append(line)
    return headers, cells


def _pct_exact(part: int, total: int) -> float:
    return 100.0 * part / total if total else 0.0


def format_table(headers: List[str], cells: List[List[str]]) -> str:
    widths = [len(h) for h in headers]
    for line in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, line)]
    out = [' | '.join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
           '-+-'.join('-' * w for w in widths)]
    out += [' | '.join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    return '\n'.join(out)

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``status errors``: each errored table with its SQLSTATE and message, from the error log
(``<manifest>.errors.jsonl``, the last entry per table), else from the manifest."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
from typing import Dict, List, Optional, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow

HEADERS = ['Source Table', 'Table Date', 'SQLSTATE', 'Attempts', 'Failed At', 'Message']


def read_error_log(path: Optional[str]) -> Dict[str, Dict[str, object]]:
    """source table -> its last logged failure. A missing log is empty; a line that is not
    JSON (a log cut by a crash) is skipped."""
    out: Dict[str, Dict[str, object]] = {}
    if not path:
        return out
    try:
        handle = open(path, encoding='utf-8', errors='replace')
    except OSError:
        return out
    with handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get('source_table'), str):
                out[entry['source_table']] = entry
    return out


def errored_tables(rows: List[ManifestRow], log: Dict[str, Dict[str, object]]) -> List[Dict[str, object]]:
    """The errored (and not migrated) tables, each with what is known of its failure."""
    out = []
    for row in rows:
        if row.migrated or not row.errored:
            continue
        entry = log.get(row.source_table, {})
        out.append({
            'id': row.id, 'source_table': row.source_table, 'date': row.date,
            'target_table': row.target, 'attempts': row.attempts,
            'sqlstate': entry.get('sqlstate') or row.last_sqlstate,
            'message': entry.get('message') or row.last_error,
            'detail': entry.get('detail'), 'hint': entry.get('hint'),
            'part': entry.get('part'), 'failed_at': entry.get('time'),
        })
    return out


def _one_line(text) -> str:
    return ' '.join(str(text or '').split())


def error_cells(errors: List[Dict[str, object]]) -> Tuple[List[str], List[List[str]]]:
    cells = []
    for e in errors:
        message = _one_line(e['message'])
        if e.get('detail'):
            message += ' (DETAIL: %s)' % _one_line(e['detail'])
        cells.append([e['source_table'], e['date'] or '', e['sqlstate'] or '', str(e['attempts']),
                      e['failed_at'] or '', message])
    return HEADERS, cells

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``status`` report: stats and the fixed-width table list of the old tool."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import (
    fmt_bytes, fmt_duration, fmt_seconds)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow

LIST_HEADERS = ['Source Table', 'Table Date', 'Migrated', 'Errored', 'Target Table']
# after the old columns (and the old Rows / % of Data with a source), so old readers still work
FACT_HEADERS = ['Rows Copied', 'Bytes', 'Duration', 'Throughput']


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


def format_stats(data: Dict[str, object], live: Optional[Dict[str, object]] = None) -> str:
    lines = [
        'Total: %d' % data['total'],
        'Migrated: %d (%.1f%%)' % (data['migrated'], data['migrated_pct']),
        'Errored: %d (%.1f%%)' % (data['errored'], data['errored_pct']),
    ]
    if data['running']:
        lines.append('Running: %d' % data['running'])
    if live:
        lines.append(live_line(live))
    return '\n'.join(lines)


def live_line(live: Dict[str, object]) -> str:
    """One line from a running copy's snapshot: data done, rate, ETA, tables in flight."""
    size = live.get('bytes') or {}
    rate = live.get('rate_bytes_per_s')
    flight = ', '.join('%s%s' % (w['source_table'], ' (part)' if w.get('part') else '')
                       for w in live.get('workers') or [])
    return 'Copy running: %d%% of data (%s of %s), %s/s, ETA %s; in flight: %s' % (
        int(100 * (live.get('fraction') or 0)),
        fmt_bytes(size.get('total_estimate', 0) * (live.get('fraction') or 0)),
        fmt_bytes(size.get('total_estimate', 0)), fmt_bytes(rate) if rate is not None else '-',
        fmt_duration(live.get('eta_s')), flight or 'none')


def _flag(value: bool) -> str:
    return 'True' if value else 'False'


def parse_utc(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    try:
        return datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def row_facts(row: ManifestRow, live: Optional[Dict[str, object]] = None,
              now: Optional[datetime] = None) -> Dict[str, object]:
    """Rows, bytes, duration and throughput of one table; for a table in flight, what the
    running copy's snapshot says so far (bytes streamed, seconds since it started)."""
    running = row.status_word() == 'running'
    rows, nbytes, duration = row.rows_copied, row.bytes_copied, row.duration_s
    if running:
        rows = None
        jobs = [w for w in (live or {}).get('workers') or [] if w.get('source_table') == row.source_table]
        nbytes = sum(w.get('bytes_sent') or 0 for w in jobs) if jobs else None
        started = parse_utc(row.started_at)
        duration = ((now or datetime.now(timezone.utc)) - started).total_seconds() if started else None
    throughput = nbytes / duration if nbytes is not None and duration else None
    return {'running': running, 'rows': rows, 'bytes': nbytes,
            'duration_s': None if duration is None else round(duration, 3),
            'throughput_bytes_per_s': None if throughput is None else round(throughput, 1)}


def _fact_cells(facts: Dict[str, object]) -> List[str]:
    def maybe(value, fmt):
        return '' if value is None else fmt(value)
    suffix = ' so far' if facts['running'] else ''
    return [maybe(facts['rows'], str), maybe(facts['bytes'], fmt_bytes) + (suffix if facts['bytes'] is not None else ''),
            maybe(facts['duration_s'], fmt_seconds) + (suffix if facts['duration_s'] is not None else ''),
            maybe(facts['throughput_bytes_per_s'], lambda v: fmt_bytes(v) + '/s')]


def list_rows(rows: List[ManifestRow],
              sizes: Optional[Dict[str, Tuple[int, int]]] = None,
              live: Optional[Dict[str, object]] = None) -> Tuple[List[str], List[List[str]]]:
    """Header and cells: the old columns; with ``sizes`` (source row estimates) the old Rows
    and % of data; then rows copied, bytes, duration and throughput (``running`` tables: so far)."""
    headers = list(LIST_HEADERS)
    total = 0
    if sizes is not None:
        headers += ['Rows', '% of Data']
        total = sum(sizes.get(r.source_table, (0, 0))[0] for r in rows)
    headers += FACT_HEADERS
    now = datetime.now(timezone.utc)
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
        line += _fact_cells(row_facts(r, live, now))
        cells.append(line)
    return headers, cells


def list_json(rows: List[ManifestRow], sizes: Optional[Dict[str, Tuple[int, int]]] = None,
              live: Optional[Dict[str, object]] = None) -> List[Dict[str, object]]:
    """``status list --json``: the manifest's fields, then the same figures as the table."""
    now = datetime.now(timezone.utc)
    out = []
    for r in rows:
        item = r.as_dict()
        if sizes is not None:
            item['source_rows'] = sizes.get(r.source_table, (0, 0))[0]
        facts = row_facts(r, live, now)
        item['running'] = facts['running']
        item['throughput_bytes_per_s'] = facts['throughput_bytes_per_s']
        if facts['running']:
            item['bytes_so_far'] = facts['bytes']
            item['running_s'] = facts['duration_s']
        out.append(item)
    return out


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

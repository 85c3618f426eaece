# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``status report --output report.html``: one self-contained HTML page about a copy.

The summary, two charts (data copied against time; throughput per table size), the slowest
tables, the months and the errors. The charts are drawn with matplotlib (imported here only:
module payloads never need it) and embedded as base64 PNGs, so the page needs no network and
no script to be read.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import html
import io
import os
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import (
    fmt_bytes, fmt_duration, fmt_seconds)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest import status as status_report
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.error_report import (
    errored_tables)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.months import (
    month_cells, month_totals)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow

SLOWEST = 20
TIMELINE_POINTS = 400
CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
th { background: #eee; }
td.num { text-align: right; }
img { max-width: 100%; border: 1px solid #ddd; }
.err { color: #a00; }
"""


def copied_spans(rows: List[ManifestRow]) -> List[Tuple[datetime, datetime, int]]:
    """(started, finished, bytes) of every migrated table with recorded times."""
    spans = []
    for r in rows:
        start, end = status_report.parse_utc(r.started_at), status_report.parse_utc(r.finished_at)
        if r.migrated and start and end and end >= start:
            spans.append((start, end, r.bytes_copied or 0))
    return spans


def timeline(spans: List[Tuple[datetime, datetime, int]], points: int = TIMELINE_POINTS
             ) -> Tuple[List[float], List[float]]:
    """Seconds since the first start, and bytes copied by then: each table's bytes spread
    evenly over its own start-to-finish (a 40 GB table is not copied in its last second)."""
    if not spans:
        return [], []
    t0 = min(s for s, e, b in spans)
    t1 = max(e for s, e, b in spans)
    total_s = max((t1 - t0).total_seconds(), 1e-6)
    xs = [total_s * i / (points - 1) for i in range(points)]
    rel = [((s - t0).total_seconds(), (e - t0).total_seconds(), b) for s, e, b in spans]
    ys = []
    for x in xs:
        done = 0.0
        for s, e, b in rel:
            if x >= e:
                done += b
            elif x > s:
                done += b * (x - s) / (e - s)
        ys.append(done)
    return xs, ys


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100, bbox_inches='tight')
    return base64.b64encode(buf.getvalue()).decode('ascii')


def charts(rows: List[ManifestRow]) -> Dict[str, Optional[str]]:
    """The two charts as base64 PNGs (None when there is nothing to draw yet)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        raise MigrationError('status report needs the Python package matplotlib '
                             '(pip install -r requirements.txt)')
    out: Dict[str, Optional[str]] = {'progress': None, 'throughput': None}
    xs, ys = timeline(copied_spans(rows))
    fig, ax = plt.subplots(figsize=(9, 4))
    if xs:
        unit, scale = ('hours', 3600.0) if xs[-1] > 7200 else ('minutes', 60.0) if xs[-1] > 120 else ('seconds', 1.0)
        ax.plot([x / scale for x in xs], [y / 2 ** 20 for y in ys], color='tab:blue')
        ax.set_xlabel('time since the first table started (%s)' % unit)
    else:
        ax.text(0.5, 0.5, 'no table copied yet', ha='center', va='center', transform=ax.transAxes)
    ax.set_ylabel('data copied (MB)')
    ax.set_title('Data copied over time')
    ax.grid(True, alpha=0.3)
    out['progress'] = _png(fig)
    plt.close(fig)

    pts = [(r.bytes_copied, r.bytes_copied / r.duration_s) for r in rows
           if r.migrated and r.bytes_copied and r.duration_s and r.duration_s > 0]
    fig, ax = plt.subplots(figsize=(9, 4))
    if pts:
        ax.scatter([p[0] / 2 ** 20 for p in pts], [p[1] / 2 ** 20 for p in pts], s=12, alpha=0.7,
                   color='tab:orange')
        ax.set_xscale('log')
        ax.set_yscale('log')
    else:
        ax.text(0.5, 0.5, 'no table copied yet', ha='center', va='center', transform=ax.transAxes)
    ax.set_xlabel('table size copied (MB)')
    ax.set_ylabel('throughput (MB/s)')
    ax.set_title('Throughput per table size')
    ax.grid(True, which='both', alpha=0.3)
    out['throughput'] = _png(fig)
    plt.close(fig)
    return out


def _table(headers: List[str], cells: List[List[str]], css: str = '') -> str:
    head = ''.join('<th>%s</th>' % html.escape(h) for h in headers)
    body = ''.join('<tr>%s</tr>' % ''.join('<td>%s</td>' % html.escape(str(c)) for c in line)
                   for line in cells)
    return '<table%s><tr>%s</tr>%s</table>' % (' class="%s"' % css if css else '', head, body)


def summary(rows: List[ManifestRow]) -> List[Tuple[str, str]]:
    data = status_report.stats(rows)
    spans = copied_spans(rows)
    wall = (max(e for s, e, b in spans) - min(s for s, e, b in spans)).total_seconds() if spans else 0
    out = [('Tables', str(data['total'])),
           ('Migrated', '%d (%.1f%%)' % (data['migrated'], data['migrated_pct'])),
           ('Errored', '%d (%.1f%%)' % (data['errored'], data['errored_pct'])),
           ('Running', str(data['running'])), ('Pending', str(data['pending'])),
           ('Rows copied', str(data['rows_copied'])), ('Data copied', fmt_bytes(data['bytes_copied']))]
    if spans:
        out += [('First table started', min(s for s, e, b in spans).strftime('%Y-%m-%d %H:%M:%S UTC')),
                ('Last table finished', max(e for s, e, b in spans).strftime('%Y-%m-%d %H:%M:%S UTC')),
                ('Copying time (first start to last finish)', fmt_duration(wall)),
                ('Average rate', '%s/s' % fmt_bytes(data['bytes_copied'] / wall) if wall else '-')]
    return out


def render(manifest_path: str, rows: List[ManifestRow], log: Dict[str, Dict[str, object]],
           sizes: Optional[Dict[str, Tuple[int, int]]] = None) -> str:
    """The page as text."""
    pngs = charts(rows)
    slow = sorted((r for r in rows if r.migrated and r.duration_s is not None),
                  key=lambda r: -(r.duration_s or 0))[:SLOWEST]
    slow_cells = [[r.source_table, r.date or '', str(r.rows_copied or 0), fmt_bytes(r.bytes_copied or 0),
                   fmt_seconds(r.duration_s),
                   '%s/s' % fmt_bytes((r.bytes_copied or 0) / r.duration_s) if r.duration_s else '']
                  for r in slow]
    errors = errored_tables(rows, log)
    error_cells = [[e['source_table'], e['date'] or '', e['sqlstate'] or '', str(e['attempts']),
                    e['failed_at'] or '', ' '.join(str(e['message'] or '').split())] for e in errors]
    title = 'Copy report: %s' % os.path.basename(manifest_path)
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<title>%s</title><style>%s</style></head><body>' % (html.escape(title), CSS),
        '<h1>%s</h1>' % html.escape(title),
        '<p>Manifest %s, written %s.</p>' % (
            html.escape(os.path.abspath(manifest_path)),
            datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')),
        '<h2>Summary</h2>', _table(['Figure', 'Value'], [list(kv) for kv in summary(rows)]),
        '<h2>Progress over time</h2>',
        '<img id="chart-progress" alt="data copied over time" src="data:image/png;base64,%s">' % pngs['progress'],
        '<h2>Throughput per table size</h2>',
        '<img id="chart-throughput" alt="throughput per table size" src="data:image/png;base64,%s">'
        % pngs['throughput'],
        '<h2>Slowest tables</h2>',
        _table(['Source Table', 'Table Date', 'Rows', 'Bytes', 'Duration', 'Throughput'], slow_cells)
        if slow_cells else '<p>No table copied yet.</p>',
        '<h2>Errors</h2>',
        _table(['Source Table', 'Table Date', 'SQLSTATE', 'Attempts', 'Failed At', 'Message'],
               error_cells, 'err') if error_cells else '<p>No errored table.</p>',
        '<h2>Months</h2>', _table(*month_cells(month_totals(rows, sizes))),
        '</body></html>',
    ]
    return '\n'.join(parts)


def write_report(output: str, manifest_path: str, rows: List[ManifestRow],
                 log: Dict[str, Dict[str, object]],
                 sizes: Optional[Dict[str, Tuple[int, int]]] = None) -> str:
    """Write the page to ``output`` (whole or not at all); its absolute path."""
    text = render(manifest_path, rows, log, sizes)
    path = os.path.abspath(output)
    tmp = '%s.%d.tmp' % (path, os.getpid())
    try:
        with open(tmp, 'w', encoding='utf-8') as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise MigrationError('cannot write the report to %s: %s' % (path, exc.strerror or exc))
    return path

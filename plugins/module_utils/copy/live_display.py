# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The copy as the operator watches it from the CLI.

On a terminal: a live display drawn with ``rich`` (imported only here, when a terminal asks
for it: module payloads never need it): the overall bar by data with the recent rate and the
ETA, one line per worker (its table or part, bytes done of its estimate, how long it has
run), the table counts and the last error. Off a terminal: every ``interval`` seconds the old
tool's ``Progress: ...`` line, unchanged, with the data-based figures appended after `` | ``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time
from typing import Optional

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.live_state import LiveState
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import (
    Progress, fmt_bytes, fmt_duration)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import (
    RunReport, TableResult)

REFRESH_PER_SECOND = 4
TABLE_NAME_WIDTH = 40


def plain_line(progress: Progress, state: LiveState) -> str:
    """The old tool's line, kept as it was, then the data-based figures."""
    return '%s | %s' % (progress.line(), state.data_line())


class ConsoleDisplay(LiveState):
    """Live display on a terminal (``tty``), periodic plain lines otherwise."""

    def __init__(self, stream, interval: float, verbose: bool, tty: bool,
                 snapshot_file: Optional[str] = None, parallel: int = 1):
        super(ConsoleDisplay, self).__init__(snapshot_file=snapshot_file, parallel=parallel)
        self.stream = stream
        self.interval = interval
        self.verbose = verbose
        self.tty = tty
        self._live = None
        self._last = 0.0

    # -- events ------------------------------------------------------------------------
    def started(self, progress: Progress) -> None:
        super(ConsoleDisplay, self).started(progress)
        self._last = time.monotonic()
        if self.tty:
            self._live = _start_live(self)
            if self._live is None:
                self._print('(no live display: the Python package rich is not installed; '
                            'plain progress lines follow)')

    def table_finished(self, result: TableResult, progress: Progress) -> None:
        super(ConsoleDisplay, self).table_finished(result, progress)
        if result.status == 'errored':
            self._print('ERROR %s -> %s: %s' % (result.source_table, result.target_table, result.error))
        elif self.verbose:
            how = 'already copied (ledger)' if result.status == 'already_copied' else 'copied'
            self._print('%s %s -> %s: %s rows, %s in %.2fs' % (
                how, result.source_table, result.target_table, result.rows,
                fmt_bytes(result.bytes or 0), result.duration_s or 0))

    def tick(self, progress: Progress) -> None:
        super(ConsoleDisplay, self).tick(progress)
        now = time.monotonic()
        if self._live is None and now - self._last >= self.interval:
            self._last = now
            self._print(plain_line(progress, self))

    def finished(self, report: RunReport, progress: Progress) -> None:
        super(ConsoleDisplay, self).finished(report, progress)
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._print(plain_line(progress, self))

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(text + '\n')
            self.stream.flush()

    # -- the live view (called by rich's refresh thread) -------------------------------
    def render(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        snap = self.snapshot()
        rate = snap['rate_bytes_per_s']
        head = Table.grid(padding=(0, 1))
        for dummy in range(5):
            head.add_column(no_wrap=True)
        total = max(1, snap['bytes']['total_estimate'])
        head.add_row(
            Text('Data', style='bold'), ProgressBar(total=1000, completed=int(snap['fraction'] * 1000), width=36),
            Text('%3d%%' % int(snap['fraction'] * 100)),
            Text('%s of %s' % (fmt_bytes(total * snap['fraction']), fmt_bytes(snap['bytes']['total_estimate']))),
            Text('%s/s  ETA %s  elapsed %s' % (fmt_bytes(rate) if rate is not None else '-',
                                               fmt_duration(snap['eta_s']),
                                               fmt_duration(snap['elapsed_s'])), style='cyan'))
        workers = Table.grid(padding=(0, 1))
        for dummy in range(5):
            workers.add_column(no_wrap=True)
        for job in snap['workers']:
            name = job['source_table']
            if job['part']:
                name += ' [part]'
            if len(name) > TABLE_NAME_WIDTH:
                name = name[:TABLE_NAME_WIDTH - 1] + '~'
            frac = job['fraction']
            workers.add_row(
                Text('worker %d' % job['worker']), Text(name.ljust(TABLE_NAME_WIDTH), style='bold'),
                ProgressBar(total=1000, completed=int((frac or 0) * 1000), width=20),
                Text('%s of ~%s' % (fmt_bytes(job['bytes_sent']), fmt_bytes(job['estimate_bytes']))),
                Text(fmt_duration(job['elapsed_s'])))
        t = snap['tables']
        counts = Text('Tables: %d copied, %d already copied, %d errored, %d in flight, %d left of %d' % (
            t['copied'], t['already_copied'], t['errored'], t['in_flight'], t['left'], t['total']))
        parts = [head, workers, counts]
        if snap['last_error']:
            parts.append(Text('Last error: %s' % snap['last_error'], style='red', overflow='ellipsis',
                              no_wrap=True))
        return Group(*parts)


def _start_live(display: ConsoleDisplay):
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        return None
    console = Console(file=display.stream)
    live = Live(get_renderable=display.render, console=console,
                refresh_per_second=REFRESH_PER_SECOND, transient=False, redirect_stdout=False,
                redirect_stderr=False)
    live.start()
    return live

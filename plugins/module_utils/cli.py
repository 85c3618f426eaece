# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``migrate_tables``: the command-line front of the copy engine (old tool compatible).

    migrate_tables migrate -D src -O host -U user -d tgt -o host -u user [--parallel N] db_path
    migrate_tables status db_path stats|list|list_tables [-s D] [-e D] [-M] [-E] [--json]

Exit status: 0 all selected tables copied, 1 a table failed (or the run was declined),
2 bad input or an unreachable database (nothing was copied), 130 interrupted.
Passwords come from a pgpass file, ``PGPASSWORD``, or the environment variable named by
``--source-password-env`` / ``--target-password-env``; never from the command line.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import sys
import time
from typing import List, Optional

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import (
    MigrationRun, RunEvents, RunOptions, RunReport, TableResult)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    SSL_MODES, ConnParams, connect)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.recopy import RecopyRun
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.catchup_display import (
    CatchupDisplay, describe_drift)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import (
    Progress, fmt_bytes, fmt_duration)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.selection import (
    parse_month_start, select_for_status)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.source_stats import (
    table_estimates)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest import status as status_report

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def echo(text: str = '', file=None, end: str = '\n', flush: bool = True) -> None:
    """The command's output (a CLI writes to its terminal; modules never call this)."""
    stream = file or sys.stdout
    stream.write('%s%s' % (text, end))
    if flush:
        stream.flush()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as argparse but shorter
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, '%s: error: %s\n' % (self.prog, message))


def _conn_args(parser: argparse.ArgumentParser, side: str, short_db: Optional[str],
               short_host: Optional[str], short_user: Optional[str], required: bool) -> None:
    def flags(short, long):
        return [short, long] if short else [long]
    parser.add_argument(*flags(short_db, '--%s-db' % side), required=required,
                        help='%s database name' % side)
    parser.add_argument(*flags(short_host, '--%s-host' % side), required=required,
                        help='%s host (or Unix socket directory)' % side)
    parser.add_argument(*flags(short_user, '--%s-user' % side), required=required,
                        help='%s role' % side)
    parser.add_argument('--%s-port' % side, type=int, default=None, help='%s port (default 5432)' % side)
    parser.add_argument('--%s-sslmode' % side, choices=SSL_MODES, default=None)
    parser.add_argument('--%s-sslrootcert' % side, default=None)
    parser.add_argument('--%s-sslcert' % side, default=None)
    parser.add_argument('--%s-sslkey' % side, default=None)
    parser.add_argument('--%s-password-env' % side, metavar='VAR', default=None,
                        help='name of an environment variable holding the %s password' % side)


def _params(args: argparse.Namespace, side: str) -> ConnParams:
    env_name = getattr(args, '%s_password_env' % side)
    password = None
    if env_name:
        if env_name not in os.environ:
            raise MigrationError('--%s-password-env names %s, which is not set in the environment'
                                 % (side, env_name))
        password = os.environ[env_name]
    return ConnParams(host=getattr(args, '%s_host' % side), port=getattr(args, '%s_port' % side),
                      user=getattr(args, '%s_user' % side), dbname=getattr(args, '%s_db' % side),
                      password=password, sslmode=getattr(args, '%s_sslmode' % side),
                      sslrootcert=getattr(args, '%s_sslrootcert' % side),
                      sslcert=getattr(args, '%s_sslcert' % side),
                      sslkey=getattr(args, '%s_sslkey' % side))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog='migrate_tables', description='Copy ICDS tables to Citus, exactly once.')
    sub = parser.add_subparsers(dest='command', parser_class=_Parser)
    sub.required = True

    mig = sub.add_parser('migrate', help='copy the tables listed in a manifest')
    _conn_args(mig, 'source', '-D', '-O', '-U', True)
    _conn_args(mig, 'target', '-d', '-o', '-u', True)
    mig.add_argument('--start-date', help='YYYY-MM-DD (truncated to the first of the month)')
    mig.add_argument('--end-date', help='YYYY-MM-DD, exclusive (truncated to the first of the month)')
    mig.add_argument('--table', help='copy only this source table')
    mig.add_argument('--confirm', action='store_true', help='ask before each table')
    mig.add_argument('--dry-run', action='store_true', help='print what would be copied; touch nothing')
    mig.add_argument('--parallel', type=int, default=1, help='tables copied at once (default 1)')
    mig.add_argument('--split-threshold', default='1GB', metavar='SIZE',
                     help='copy a source table larger than SIZE on disk (e.g. 1GB, 500MB; '
                          'bytes without a unit) in parts: ctid block ranges copied in '
                          'parallel like separate tables, each exactly once (the split plan '
                          'and every part are recorded on the target). Default 1GB')
    mig.add_argument('--split-parts', type=int, default=None, metavar='N',
                     help='parts per split table (default: --parallel)')
    mig.add_argument('--small-table-threshold', default='64MB', metavar='SIZE',
                     help='Citus target only: a source table smaller than SIZE on disk is '
                          'written through one connection per worker instead of one per shard '
                          '(citus.max_adaptive_executor_pool_size = 1 for its transaction); '
                          'opening and closing a connection per shard costs small tables more '
                          'than it gains. 0 turns it off. Default 64MB')
    mig.add_argument('--recopy', nargs='+', metavar='TABLE', default=None,
                     help='copy these migrated source tables again, replacing their rows on the '
                          'target in one transaction (drift catch-up; put db_path before it)')
    mig.add_argument('--recopy-drifted', action='store_true',
                     help='compare every migrated table (rows and checksums) and copy again '
                          'those that differ, as --recopy')
    mig.add_argument('--no-stop-on-error', action='store_true',
                     help='keep starting tables after one failed')
    mig.add_argument('--retry-errors', action='store_true', help='also copy tables that failed before')
    mig.add_argument('-y', '--yes', action='store_true', help='do not ask for confirmation')
    mig.add_argument('--error-log', default=None,
                     help='JSON-lines error log (default: <db_path>.errors.jsonl)')
    mig.add_argument('--source-schema', default='public')
    mig.add_argument('--target-schema', default='public')
    mig.add_argument('--ledger-schema', default='icds_citus_migration',
                     help='schema of the exactly-once ledger on the target')
    mig.add_argument('--source-id', default=None,
                     help='name of the source in the ledger (default: database name and system id)')
    mig.add_argument('--progress-interval', type=float, default=10.0,
                     help='seconds between progress lines when not on a terminal')
    mig.add_argument('--verbose', '-v', action='store_true', help='a line per finished table')
    mig.add_argument('--json', action='store_true', help='print the run summary as JSON')
    mig.add_argument('db_path', help='the SQLite manifest')

    st = sub.add_parser('status', help='report progress recorded in a manifest')
    st.add_argument('db_path', help='the SQLite manifest')
    st.add_argument('action', nargs='?', default='stats', choices=['stats', 'list', 'list_tables'])
    st.add_argument('-s', '--start-date')
    st.add_argument('-e', '--end-date')
    st.add_argument('-M', '--migrated', action='store_true', help='only migrated tables')
    st.add_argument('-E', '--errored', action='store_true', help='only errored tables')
    st.add_argument('--json', action='store_true', help='machine-readable output')
    _conn_args(st, 'source', '-D', '-O', '-U', False)
    return parser


class ConsoleEvents(RunEvents):
    """tqdm bar on a terminal; plain periodic lines in the old format otherwise."""

    def __init__(self, stream, interval: float, verbose: bool, tty: bool):
        self.stream = stream
        self.interval = interval
        self.verbose = verbose
        self.tty = tty
        self.pbar = None
        self._last = 0.0

    def started(self, progress: Progress) -> None:
        if self.tty:
            from tqdm import tqdm
            self.pbar = tqdm(total=progress.total_tables, unit='table', file=self.stream,
                             dynamic_ncols=True, smoothing=0.1)
        self._last = time.monotonic()

    def _postfix(self, progress: Progress) -> str:
        return 'data %d%%, %d rows, %s, %s/s, %d errored' % (
            int(progress.data_fraction() * 100), progress.rows_copied, fmt_bytes(progress.bytes_copied + progress.inflight_bytes),
            fmt_bytes(progress.throughput()), progress.errored_tables)

    def table_finished(self, result: TableResult, progress: Progress) -> None:
        if self.pbar is not None:
            self.pbar.update(1)
            self.pbar.set_postfix_str(self._postfix(progress), refresh=False)
        if result.status == 'errored':
            self._print('ERROR %s -> %s: %s' % (result.source_table, result.target_table, result.error))
        elif self.verbose:
            how = 'already copied (ledger)' if result.status == 'already_copied' else 'copied'
            self._print('%s %s -> %s: %s rows, %s in %.2fs' % (
                how, result.source_table, result.target_table, result.rows,
                fmt_bytes(result.bytes or 0), result.duration_s or 0))

    def tick(self, progress: Progress) -> None:
        now = time.monotonic()
        if self.pbar is not None:
            self.pbar.set_postfix_str(self._postfix(progress))
        elif now - self._last >= self.interval:
            self._last = now
            self._print(progress.line())

    def finished(self, report: RunReport, progress: Progress) -> None:
        if self.pbar is not None:
            self.pbar.close()
        self._print(progress.line())

    def _print(self, text: str) -> None:
        if self.pbar is not None:
            self.pbar.write(text, file=self.stream)
        else:
            echo(text, file=self.stream, flush=True)


def _ask(question: str) -> bool:
    echo(question, end=' ', flush=True)
    try:
        answer = input()
    except EOFError:
        echo()
        raise MigrationError('no answer on standard input: use --yes to run without asking')
    return answer.strip() == 'yes'


def _confirmed_run(run, args: argparse.Namespace, question: str, verb: str):
    """``run.run()`` once the operator said yes (unless --yes), asking per table with
    --confirm; None when declined ('Aborted.' printed)."""
    if not args.yes and not _ask(question):
        echo('Aborted.')
        return None
    confirm = None
    if args.confirm:
        def confirm(row):
            return _ask('%s %s -> %s? [yes / no]' % (verb, row.source_table, row.target))
    return run.run(confirm)


def cmd_migrate(args: argparse.Namespace) -> int:
    options = RunOptions(parallel=args.parallel, stop_on_error=not args.no_stop_on_error,
                         retry_errors=args.retry_errors, start_date=args.start_date,
                         end_date=args.end_date, table=args.table,
                         source_schema=args.source_schema, target_schema=args.target_schema,
                         ledger_schema=args.ledger_schema, error_log=args.error_log,
                         source_id=args.source_id, split_threshold=args.split_threshold,
                         split_parts=args.split_parts,
                         small_table_threshold=args.small_table_threshold)
    if args.recopy or args.recopy_drifted:
        return cmd_recopy(args, options)
    tty = sys.stdout.isatty()
    events = ConsoleEvents(sys.stdout, args.progress_interval, args.verbose, tty)
    run = MigrationRun(args.db_path, _params(args, 'source'), _params(args, 'target'), options, events)
    try:
        rows = run.prepare(readonly=args.dry_run)
        if args.dry_run:
            plan = run.dry_run()
            for item in plan:
                if 'error' in item:
                    echo('[dry run] %s -> %s: ERROR %s' % (item['source_table'], item['target_table'], item['error']))
                elif item.get('already_copied'):
                    echo('[dry run] %s -> %s: already copied (ledger), would mark migrated'
                         % (item['source_table'], item['target_table']))
                else:
                    echo('[dry run] %s | %s' % (item['copy_out'], item['copy_in']))
            echo('[dry run] %d tables would be copied; nothing was changed' % len(plan))
            return EXIT_FAILED if any('error' in i for i in plan) else EXIT_OK
        if not rows:
            echo('Nothing to migrate: no table matches the selection.')
            if args.json:
                echo(json.dumps({'selected': 0, 'copied': 0, 'already_copied': 0, 'errored': 0,
                                 'stopped_early': False, 'elapsed_s': 0.0, 'tables': []}, indent=2))
            return EXIT_OK
        report = _confirmed_run(run, args, 'Preparing to migrate %d tables. [yes / no]'
                                % len(rows), 'Migrate')
        if report is None:
            return EXIT_FAILED
    finally:
        run.close()
    if args.json:
        echo(json.dumps({'selected': report.selected, 'copied': report.count('copied'),
                         'already_copied': report.count('already_copied'),
                         'errored': report.failed, 'stopped_early': report.stopped_early,
                         'elapsed_s': round(report.elapsed_s, 3),
                         'tables': [r.as_dict() for r in report.results]}, indent=2))
    else:
        echo('Done in %s: %d copied, %d already copied, %d errored%s.' % (
            fmt_duration(report.elapsed_s), report.count('copied'), report.count('already_copied'),
            report.failed, ', stopped after the first error' if report.stopped_early else ''))
        if report.failed:
            echo('Errors are recorded in the manifest; see `migrate_tables status %s list -E`.'
                 % args.db_path)
    return report.exit_code


def cmd_recopy(args: argparse.Namespace, options: RunOptions) -> int:
    """``migrate --recopy T... / --recopy-drifted``: replace migrated tables' target rows
    (named tables whole; with --recopy-drifted every other migrated table is compared segment
    by segment and only its differing rows are replaced)."""
    run = RecopyRun(args.db_path, _params(args, 'source'), _params(args, 'target'), options,
                    args.recopy or [], args.recopy_drifted)
    display = CatchupDisplay(sys.stdout, args.progress_interval, args.verbose)
    run.on_result = display.result
    try:
        items = run.prepare(readonly=args.dry_run)
        display.total = len(run.catchup_items)
        if args.dry_run:
            for item in run.dry_run():
                if 'error' in item:
                    echo('[dry run] %s -> %s: ERROR %s' % (
                        item['source_table'], item['target_table'], item['error']))
                else:
                    echo('[dry run] BEGIN; %s; %s | %s; COMMIT' % (
                        item['delete'], item['copy_out'], item['copy_in']))
            drift = run.catch_up(dry_run=True)
            drifted = [r for r in drift if r.status == 'drifted']
            for res in drifted:
                echo('[dry run] %s -> %s: %s' % (res.source_table, res.target_table, describe_drift(res)))
            if args.json:
                echo(json.dumps({'dry_run': True, 'recopy': len(items), 'drifted': len(drifted),
                                 'tables': [r.as_dict() for r in drift]}, indent=2))
            echo('[dry run] %d tables would be re-copied, %d drifted tables would be repaired; '
                 'nothing was changed' % (len(items), len(drifted)))
            return EXIT_FAILED if any(r.status == 'errored' for r in drift) else EXIT_OK
        if not items and not run.catchup_items:
            echo('Nothing to re-copy: every migrated table matches the source.')
            return EXIT_OK
        report = None
        if items:
            report = _confirmed_run(run, args, 'Preparing to re-copy %d tables, replacing their '
                                    'rows on the target. [yes / no]' % len(items), 'Re-copy')
            if report is None:
                return EXIT_FAILED
        if run.catchup_items and not (report and report.failed and options.stop_on_error):
            if not args.yes and not _ask('Compare %d migrated tables and repair the rows that differ '
                                         'on the target? [yes / no]' % len(run.catchup_items)):
                return EXIT_FAILED
            run.catch_up()
    finally:
        run.close()
    results = report.results if report else []
    for result in results:
        if result.status == 'errored':
            echo('ERROR %s -> %s: %s' % (result.source_table, result.target_table, result.error))
        elif result.status == 'copied':
            echo('re-copied %s -> %s: %s rows' % (
                result.source_table, result.target_table, result.rows))
    caught = run.catchup_results
    recopied = sum(1 for r in results if r.status == 'copied') + sum(1 for r in caught if r.status == 'recopied')
    repaired = sum(1 for r in caught if r.status == 'repaired')
    errored = sum(1 for r in results if r.status == 'errored') + sum(1 for r in caught if r.status == 'errored')
    elapsed = (report.elapsed_s if report else 0.0) + display.elapsed()
    if args.json:
        echo(json.dumps({'selected': len(results) + len(caught), 'recopied': recopied,
                         'repaired': repaired, 'errored': errored,
                         'rows_repaired': sum(r.rows_repaired for r in caught),
                         'stopped_early': bool(report and report.stopped_early),
                         'elapsed_s': round(elapsed, 3),
                         'tables': [r.as_dict() for r in results] + [r.as_dict() for r in caught]},
                        indent=2))
    if caught and not recopied and not repaired and not errored:
        echo('Nothing to re-copy: every migrated table matches the source.')
    echo('Done in %s: %d re-copied, %d errored, %d repaired (%d rows)%s.' % (
        fmt_duration(elapsed), recopied, errored, repaired, sum(r.rows_repaired for r in caught),
        ', stopped after the first error' if report and report.stopped_early else ''))
    return EXIT_FAILED if errored or (report and report.exit_code) else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    start = parse_month_start(args.start_date, '--start-date')
    end = parse_month_start(args.end_date, '--end-date')
    with Manifest.open(args.db_path, readonly=True) as manifest:
        rows = select_for_status(manifest.rows(), start, end, args.migrated, args.errored)
    if args.action == 'stats':
        data = status_report.stats(rows)
        echo(json.dumps(data, indent=2) if args.json else status_report.format_stats(data))
        return EXIT_OK
    sizes = None
    if args.source_db or args.source_host:
        conn = connect(_params(args, 'source'), 'source')
        try:
            sizes = table_estimates(conn, [r.source_table for r in rows])
        finally:
            conn.close()
    if args.json:
        out = []
        for r in rows:
            item = r.as_dict()
            if sizes is not None:
                item['source_rows'] = sizes.get(r.source_table, (0, 0))[0]
            out.append(item)
        echo(json.dumps(out, indent=2))
    else:
        echo(status_report.format_table(*status_report.list_rows(rows, sizes)))
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == 'migrate':
            return cmd_migrate(args)
        return cmd_status(args)
    except MigrationError as exc:
        echo('migrate_tables: error: %s' % exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        echo('migrate_tables: interrupted; tables in flight were rolled back', file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``migrate_tables``: the command-line front of the copy engine (old tool compatible).

    migrate_tables migrate -D src -O host -U user -d tgt -o host -u user [--parallel N] db_path
    migrate_tables status db_path stats|list|list_tables|months|errors [-s D] [-e D] [-M] [-E]
                   [--json] [--watch N]
    migrate_tables status db_path report --output report.html

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
    MigrationRun, RunOptions)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.live_display import ConsoleDisplay
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.live_file import (
    current_run, live_path)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    SSL_MODES, ConnParams, connect)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.recopy import RecopyRun
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.run_options import (
    empty_result, run_options, run_result)
from ansible_collections.icds.citus_migration.plugins.module_utils.common import defaults
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.catchup_display import (
    CatchupDisplay, describe_drift)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import fmt_duration
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.selection import (
    parse_month_start, select_for_status)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.source_stats import (
    table_estimates)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest import status as status_report
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.error_report import (
    error_cells, errored_tables, read_error_log)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.months import (
    month_cells, month_totals)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.error_log import default_error_log

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
    parser.add_argument('--%s-port' % side, type=int, default=None, help='%s port (default %d)' % (side, defaults.PORT))
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
    mig.add_argument('--parallel', type=int, default=defaults.PARALLEL,
                     help='tables copied at once (default %d)' % defaults.PARALLEL)
    mig.add_argument('--split-threshold', default=defaults.SPLIT_THRESHOLD, metavar='SIZE',
                     help='copy a source table larger than SIZE on disk (e.g. 1GB, 500MB; '
                          'bytes without a unit) in segments of about --segment-size: ranges '
                          'of its primary (or unique NOT NULL) key, else ctid block ranges read '
                          'under one shared snapshot; copied in parallel like separate tables, '
                          'each exactly once (the split plan and every segment are recorded on '
                          'the target, so a re-run copies only the missing ones). Default %s' % defaults.SPLIT_THRESHOLD)
    mig.add_argument('--segment-size', default=defaults.SEGMENT_SIZE, metavar='SIZE',
                     help='about how much of a split table one segment holds (its unit of '
                          'work, commit and resume). Default %s' % defaults.SEGMENT_SIZE)
    mig.add_argument('--split-parts', type=int, default=None, metavar='N',
                     help='segments per split table, whatever its size (default: one per '
                          '--segment-size)')
    mig.add_argument('--small-table-threshold', default=defaults.SMALL_TABLE_THRESHOLD, metavar='SIZE',
                     help='Citus target only: a source table smaller than SIZE on disk is '
                          'written through one connection per worker instead of one per shard '
                          '(citus.max_adaptive_executor_pool_size = 1 for its transaction); '
                          'opening and closing a connection per shard costs small tables more '
                          'than it gains. 0 turns it off. Default %s' % defaults.SMALL_TABLE_THRESHOLD)
    mig.add_argument('--recopy', nargs='+', metavar='TABLE', default=None,
                     help='copy these migrated source tables again, replacing their rows on the '
                          'target in one transaction (drift catch-up; put db_path before it)')
    mig.add_argument('--recopy-drifted', action='store_true',
                     help='catch up: compare every migrated table segment by segment and '
                          'replace only the rows that differ on the target; the values of the '
                          'rows the source changed since their copy are compared, the keys of '
                          'all (see --compare-all-rows)')
    mig.add_argument('--compare-all-rows', action='store_true',
                     help='with --recopy-drifted: compare the values of every row, not only of '
                          'the rows changed on the source since their copy (slower; finds rows '
                          'changed on the target alone, as validation does)')
    mig.add_argument('--no-stop-on-error', action='store_true',
                     help='keep starting tables after one failed')
    mig.add_argument('--retry-errors', action='store_true', help='also copy tables that failed before')
    mig.add_argument('-y', '--yes', action='store_true', help='do not ask for confirmation')
    mig.add_argument('--error-log', default=None,
                     help='JSON-lines error log (default: <db_path>.errors.jsonl)')
    mig.add_argument('--source-schema', default=defaults.SCHEMA)
    mig.add_argument('--target-schema', default=defaults.SCHEMA)
    mig.add_argument('--ledger-schema', default=defaults.LEDGER_SCHEMA,
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
    st.add_argument('action', nargs='?', default='stats',
                    choices=['stats', 'list', 'list_tables', 'months', 'errors', 'report'],
                    help='stats (default); list (list_tables): one line per table; months: totals '
                         'per month; errors: errored tables with SQLSTATE and message; report: '
                         'an HTML page with charts (--output)')
    st.add_argument('-s', '--start-date')
    st.add_argument('-e', '--end-date')
    st.add_argument('-M', '--migrated', action='store_true', help='only migrated tables')
    st.add_argument('-E', '--errored', action='store_true', help='only errored tables')
    st.add_argument('--json', action='store_true', help='machine-readable output')
    st.add_argument('--watch', type=float, default=None, metavar='N',
                    help='print again every N seconds until interrupted (Ctrl-C); with --json '
                         'one JSON document per line')
    st.add_argument('--error-log', default=None,
                    help='JSON-lines error log read by errors and report (default: <db_path>.errors.jsonl)')
    st.add_argument('--output', '-o', default=None, metavar='FILE',
                    help='report: the HTML file to write')
    _conn_args(st, 'source', '-D', '-O', '-U', False)
    return parser


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
    options = run_options(dict(vars(args), stop_on_error=not args.no_stop_on_error), 'cli')
    if args.recopy or args.recopy_drifted:
        return cmd_recopy(args, options)
    tty = sys.stdout.isatty()
    events = ConsoleDisplay(sys.stdout, args.progress_interval, args.verbose, tty,
                            snapshot_file=None if args.dry_run else live_path(args.db_path),
                            parallel=args.parallel)
    run = MigrationRun(args.db_path, _params(args, 'source'), _params(args, 'target'), options, events)
    try:
        rows = run.prepare(readonly=args.dry_run)
        if args.dry_run:
            plan = run.dry_run()
            if args.json:
                echo(json.dumps({'dry_run': True, 'tables': plan}, indent=2))
                return EXIT_FAILED if any('error' in i for i in plan) else EXIT_OK
            for item in plan:
                if 'error' in item:
                    echo('[dry run] %s -> %s: ERROR %s' % (item['source_table'], item['target_table'], item['error']))
                elif item.get('already_copied'):
                    echo('[dry run] %s -> %s: already copied (ledger), would mark migrated'
                         % (item['source_table'], item['target_table']))
                else:
                    if item.get('split'):
                        echo('[dry run] %s -> %s: split by %s, %d done' % (
                            item['source_table'], item['target_table'], item['split'],
                            item['segments_done']))
                    echo('[dry run] %s | %s' % (item['copy_out'], item['copy_in']))
            echo('[dry run] %d tables would be copied; nothing was changed' % len(plan))
            return EXIT_FAILED if any('error' in i for i in plan) else EXIT_OK
        if not rows:
            echo('Nothing to migrate: no table matches the selection.')
            if args.json:
                echo(json.dumps(empty_result(), indent=2))
            return EXIT_OK
        report = _confirmed_run(run, args, 'Preparing to migrate %d tables. [yes / no]'
                                % len(rows), 'Migrate')
        if report is None:
            return EXIT_FAILED
    finally:
        run.close()
    if args.json:
        echo(json.dumps(run_result(report), indent=2))
    else:
        echo('Done in %s: %d copied, %d already copied, %d errored%s.' % (
            fmt_duration(report.elapsed_s), report.count('copied'), report.count('already_copied'),
            report.failed, ', stopped after the first error' if report.stopped_early else ''))
        if report.failed:
            echo('Errors are recorded in the manifest; see `migrate_tables status %s errors`.'
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
            display.start()
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
    for warning in run.catchup_warnings:
        echo('WARNING %s' % warning)
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
    if args.watch is not None and args.watch <= 0:
        raise MigrationError('--watch must be a number of seconds above 0, got %s' % args.watch)
    if args.action == 'report':
        if not args.output:
            raise MigrationError('status report needs --output FILE (the HTML page to write)')
        if args.watch is not None:
            raise MigrationError('--watch does not apply to status report')
    elif args.output:
        raise MigrationError('--output only applies to status report')
    if args.watch is None:
        echo(status_output(args, start, end))
        return EXIT_OK
    tty = sys.stdout.isatty()
    while True:  # until Ctrl-C (exit 0) or a pipe closes
        text = status_output(args, start, end)
        if args.json:  # one JSON document per line, per refresh: a reader parses each line
            echo(json.dumps(json.loads(text), separators=(',', ':')))
        else:
            if tty:
                echo('\x1b[H\x1b[2J', end='')
            echo('%s  (every %gs; Ctrl-C to stop)' % (time.strftime('%Y-%m-%d %H:%M:%S'), args.watch))
            echo(text)
        time.sleep(args.watch)


def _source_sizes(args: argparse.Namespace, rows) -> Optional[dict]:
    """Source table estimates when source connection flags were given, else None."""
    if not (args.source_db or args.source_host):
        return None
    conn = connect(_params(args, 'source'), 'source')
    try:
        return table_estimates(conn, [r.source_table for r in rows])
    finally:
        conn.close()


def status_output(args: argparse.Namespace, start: Optional[str], end: Optional[str]) -> str:
    """What one ``status`` prints (text or JSON); ``report`` writes its file and says where."""
    with Manifest.open(args.db_path, readonly=True) as manifest:
        rows = select_for_status(manifest.rows(), start, end, args.migrated, args.errored)
    live = current_run(args.db_path)
    error_log = args.error_log or default_error_log(args.db_path)
    if args.action == 'stats':
        data = status_report.stats(rows)
        if args.json:
            data = dict(data, live=live)
            return json.dumps(data, indent=2)
        return status_report.format_stats(data, live)
    if args.action == 'errors':
        errors = errored_tables(rows, read_error_log(error_log))
        if args.json:
            return json.dumps(errors, indent=2)
        if not errors:
            return 'No errored table.'
        return status_report.format_table(*error_cells(errors))
    sizes = _source_sizes(args, rows)
    if args.action == 'months':
        totals = month_totals(rows, sizes)
        if args.json:
            return json.dumps(totals, indent=2)
        return status_report.format_table(*month_cells(totals))
    if args.action == 'report':
        from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.report_html import (
            write_report)
        path = write_report(args.output, args.db_path, rows, read_error_log(error_log), sizes)
        if args.json:
            return json.dumps({'report': path}, indent=2)
        return 'Report written to %s' % path
    if args.json:
        return json.dumps(status_report.list_json(rows, sizes, live), indent=2)
    return status_report.format_table(*status_report.list_rows(rows, sizes, live))


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == 'migrate':
            return cmd_migrate(args)
        try:
            return cmd_status(args)
        except KeyboardInterrupt:  # the end of --watch
            return EXIT_OK
    except MigrationError as exc:
        echo('migrate_tables: error: %s' % exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        echo('migrate_tables: interrupted; tables in flight were rolled back', file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK

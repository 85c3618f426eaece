# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every run over a manifest sets up and shares, written once for ``MigrationRun`` (the
copy), ``RecopyRun`` (re-copies) and ``Catchup`` (segment catch-up): the run's facts read from
both servers, the error-log record of a failed table, and a worker's reconnecting pair of
connections."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import socket
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    ConnParams, connect)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.error_log import append_error
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.source_stats import table_estimates
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow, utc_now
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.citus_catalog import citus_version


def runner_label() -> str:
    return '%s:%d' % (socket.gethostname(), os.getpid())


def source_identity(conn, params: ConnParams) -> str:
    """Stable name of the source database for the ledger: dbname plus the cluster's
    system identifier when the role may read it (it tells two same-named databases apart)."""
    with conn.cursor() as cur:
        cur.execute('SELECT current_database()')
        dbname = cur.fetchone()[0]
        try:
            cur.execute('SELECT system_identifier::text FROM pg_control_system()')
            sysid = cur.fetchone()[0]
        except Exception:
            conn.rollback()
            sysid = None
    conn.rollback()
    return '%s@%s' % (dbname, sysid) if sysid else dbname


@dataclass
class RunFacts:
    """Read once per run from both servers."""

    source_id: str
    target_is_citus: bool
    estimates: Dict[str, Tuple[int, int]]  # source table -> (estimated rows, bytes on disk)


def read_facts(src, tgt, source: ConnParams, source_id: Optional[str], source_schema: str,
               tables: Sequence[str]) -> RunFacts:
    """The ledger's name of the source, whether the target is Citus, the source estimates."""
    ident = source_id or source_identity(src, source)
    on_citus = citus_version(tgt) is not None
    tgt.rollback()
    return RunFacts(ident, on_citus, table_estimates(src, tables, source_schema) if tables else {})


def log_failure(error_log: str, row: ManifestRow, exc: BaseException, command: str,
                part: Optional[str], source: ConnParams, target: ConnParams, runner: str) -> None:
    """One JSON line in the run's error log for a table (or part) that failed."""
    append_error(error_log, {
        'time': utc_now(), 'manifest_id': row.id, 'source_table': row.source_table,
        'target_table': row.target, 'date': row.date, 'part': part or None,
        'sqlstate': getattr(exc, 'sqlstate', None), 'message': str(exc),
        'detail': getattr(exc, 'detail', None), 'context': getattr(exc, 'context', None),
        'hint': getattr(exc, 'hint', None), 'command': command,
        'source': source.describe(), 'target': target.describe(), 'runner': runner,
    })


class ConnectionPair:
    """A worker's source (read only) and target connections, opened on first use and again
    after ``reset`` (a failed table may leave them broken or mid-transaction)."""

    def __init__(self, source: ConnParams, target: ConnParams):
        self.source, self.target = source, target
        self.src = None
        self.tgt = None

    def ensure(self):
        if self.src is None or self.src.closed:
            self.src = connect(self.source, 'source')
            self.src.set_session(readonly=True)
        if self.tgt is None or self.tgt.closed:
            self.tgt = connect(self.target, 'target')
        return self.src, self.tgt

    def cancel(self) -> None:
        for conn in (self.src, self.tgt):
            try:
                if conn is not None and not conn.closed:
                    conn.cancel()
            except Exception:
                pass

    def reset(self) -> None:
        for conn in (self.src, self.tgt):
            try:
                if conn is not None:
                    conn.close()
            except Exception:
                pass
        self.src = self.tgt = None

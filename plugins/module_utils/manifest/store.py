# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration manifest: a SQLite file, compatible with the old in-house tool.

The old tool's table ``tables`` is kept exactly as it was (id, source_table, date,
target_table, migrated, errored), so a manifest written by either tool works with the
other. What the old tool never recorded (rows, bytes, times, attempts, the last error)
lives in a side table ``table_facts`` keyed by ``tables.id``, created in place by
``upgrade()``, which only adds and never rewrites or drops a row.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import ManifestError

SCHEMA_VERSION = '1'
# How long to wait for another process's lock on the manifest before giving up.
BUSY_TIMEOUT_ENV = 'ICDS_MIGRATION_MANIFEST_TIMEOUT'


def _busy_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get(BUSY_TIMEOUT_ENV, '30')))
    except ValueError:
        return 30.0


BUSY_TIMEOUT_S = _busy_timeout()

OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS tables (
    id integer PRIMARY KEY,
    source_table text NOT NULL,
    date text,
    target_table text,
    migrated integer,
    errored integer
)"""

FACTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS table_facts (
    table_id integer PRIMARY KEY REFERENCES tables (id),
    state text,
    runner text,
    rows_copied integer,
    bytes_copied integer,
    started_at text,
    finished_at text,
    duration_s real,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    last_sqlstate text,
    copied_by text,
    segments_done integer,
    segments_total integer
)"""
# columns added to table_facts after its first version: (name, type), added in place
FACTS_ADDED = (('segments_done', 'integer'), ('segments_total', 'integer'))

META_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest_meta (
    key text PRIMARY KEY,
    value text
)"""

REQUIRED_COLUMNS = ('id', 'source_table', 'date', 'target_table', 'migrated', 'errored')


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


@dataclass
class ManifestRow:
    """One table to copy, with what is known about its copy."""

    id: int
    source_table: str
    date: Optional[str]
    target_table: Optional[str]
    migrated: bool
    errored: bool
    state: Optional[str] = None
    runner: Optional[str] = None
    rows_copied: Optional[int] = None
    bytes_copied: Optional[int] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    duration_s: Optional[float] = None
    attempts: int = 0
    last_error: Optional[str] = None
    last_sqlstate: Optional[str] = None
    copied_by: Optional[str] = None
    segments_done: Optional[int] = None  # of a table copied in segments: how many are copied
    segments_total: Optional[int] = None
    extra: Dict[str, object] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """Target table name: NULL in the manifest means the source's own name."""
        return self.target_table or self.source_table

    def as_dict(self) -> Dict[str, object]:
        return {
            'id': self.id, 'source_table': self.source_table, 'date': self.date,
            'target_table': self.target, 'migrated': self.migrated, 'errored': self.errored,
            'state': self.status_word(), 'rows_copied': self.rows_copied,
            'bytes_copied': self.bytes_copied, 'started_at': self.started_at,
            'finished_at': self.finished_at, 'duration_s': self.duration_s,
            'attempts': self.attempts, 'last_error': self.last_error,
            'last_sqlstate': self.last_sqlstate, 'segments_done': self.segments_done,
            'segments_total': self.segments_total,
        }

    def status_word(self) -> str:
        if self.migrated:
            return 'migrated'
        if self.state == 'running':
            return 'running'
        if self.errored:
            return 'errored'
        return 'pending'


_SELECT_ROWS = """
SELECT t.id, t.source_table, t.date, t.target_table, t.migrated, t.errored,
       f.state, f.runner, f.rows_copied, f.bytes_copied, f.started_at, f.finished_at,
       f.duration_s, COALESCE(f.attempts, 0), f.last_error, f.last_sqlstate, f.copied_by,
       {segments}
FROM tables t LEFT JOIN table_facts f ON f.table_id = t.id
"""


# A manifest opened read-only may predate the side table: same columns, no facts.
_SELECT_ROWS_OLD = """
SELECT t.id, t.source_table, t.date, t.target_table, t.migrated, t.errored,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL
FROM tables t
"""


def _row(rec: Sequence) -> ManifestRow:
    return ManifestRow(rec[0], rec[1], rec[2], rec[3], bool(rec[4]), bool(rec[5]), *rec[6:])


class Manifest:
    """Open manifest file. Use ``Manifest.open`` or ``Manifest.create``."""

    def __init__(self, path: str, conn: sqlite3.Connection):
        self.path = path
        self._conn = conn

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, readonly: bool = False) -> 'Manifest':
        """Open an existing manifest (old or new schema) and upgrade it in place."""
        if not path:
            raise ManifestError('no manifest path given')
        if not os.path.exists(path):
            raise ManifestError('manifest not found: %s' % path)
        if os.path.isdir(path):
            raise ManifestError('manifest path is a directory, not a file: %s' % path)
        conn = cls._connect(path, readonly)
        manifest = cls(path, conn)
        manifest._check_shape()
        manifest._check_intact()
        if not readonly:
            manifest.upgrade()
        return manifest

    @classmethod
    def create(cls, path: str) -> 'Manifest':
        """Create a new manifest file with mode 0600 (refuses to overwrite a non-manifest)."""
        if os.path.exists(path):
            return cls.open(path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ManifestError('cannot create manifest %s: directory %s does not exist'
                                % (path, parent))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        conn = cls._connect(path, False)
        manifest = cls(path, conn)
        with manifest._write():
            conn.execute(OLD_SCHEMA)
        manifest.upgrade()
        return manifest

    @staticmethod
    def _connect(path: str, readonly: bool) -> sqlite3.Connection:
        try:
            if readonly:
                conn = sqlite3.connect('file:%s?mode=ro' % os.path.abspath(path), uri=True,
                                       timeout=BUSY_TIMEOUT_S, isolation_level=None)
            else:
                conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise ManifestError('cannot open manifest %s: %s' % (path, exc))
        return conn

    def _check_shape(self) -> None:
        try:
            cols = [r[1] for r in self._conn.execute('PRAGMA table_info(tables)')]
        except sqlite3.OperationalError as exc:
            self._conn.close()
            raise _readable(self.path, exc)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if 'malformed' in str(exc):
                raise _readable(self.path, exc)
            raise ManifestError('%s is not a migration manifest (not a SQLite database: %s)'
                                % (self.path, exc))
        missing = [c for c in REQUIRED_COLUMNS if c not in cols]
        if not cols:
            self._conn.close()
            raise ManifestError("%s is not a migration manifest: it has no 'tables' table"
                                % self.path)
        if missing:
            self._conn.close()
            raise ManifestError("%s is not a migration manifest: table 'tables' lacks "
                                "column(s) %s" % (self.path, ', '.join(missing)))

    def _check_intact(self) -> None:
        """Refuse a damaged file before anything is written to it (quick_check: pages and
        records readable; milliseconds for a manifest of many thousand rows)."""
        try:
            found = [r[0] for r in self._conn.execute('PRAGMA quick_check(5)')]
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise _readable(self.path, exc)
        if found != ['ok']:
            self._conn.close()
            lines = [ln.strip() for r in found for ln in str(r).splitlines()
                     if ln.strip() and not ln.startswith('***')]
            found = lines or ['quick_check failed']
            raise ManifestError('manifest %s is damaged (database disk image is malformed: %s): '
                                'restore it from a backup or generate a new one; the ledger on '
                                'the target still knows every copied table'
                                % (self.path, found[0]))

    def upgrade(self) -> None:
        """Add the side tables if missing. Never touches the rows of ``tables``."""
        with self._write():
            self._conn.execute(FACTS_SCHEMA)
            have = {r[1] for r in self._conn.execute('PRAGMA table_info(table_facts)')}
            for name, kind in FACTS_ADDED:
                if name not in have:
                    self._conn.execute('ALTER TABLE table_facts ADD COLUMN %s %s' % (name, kind))
            self._conn.execute(META_SCHEMA)
            self._conn.execute("INSERT OR IGNORE INTO manifest_meta (key, value) "
                               "VALUES ('schema_version', ?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> 'Manifest':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------
    def _write(self) -> '_WriteTxn':
        return _WriteTxn(self)

    def batch(self) -> '_WriteTxn':
        """One transaction (one commit, one fsync) for every write made inside it."""
        return _WriteTxn(self)

    def add_rows(self, rows: Iterable[Tuple[str, Optional[str], Optional[str]]]) -> int:
        """Append (source_table, date, target_table) rows; returns how many were added."""
        count = 0
        with self._write():
            for source_table, date, target_table in rows:
                self._conn.execute('INSERT INTO tables (source_table, date, target_table) '
                                   'VALUES (?, ?, ?)', (source_table, date, target_table))
                count += 1
        return count

    def _facts(self, table_id: int, **values: object) -> None:
        self._conn.execute('INSERT OR IGNORE INTO table_facts (table_id) VALUES (?)',
                           (table_id,))
        sets = ', '.join('%s = ?' % k for k in values)
        self._conn.execute('UPDATE table_facts SET %s WHERE table_id = ?' % sets,
                           tuple(values.values()) + (table_id,))

    def mark_running(self, table_id: int, runner: str) -> None:
        with self._write():
            self._facts(table_id, state='running', runner=runner, started_at=utc_now())
            self._conn.execute('UPDATE table_facts SET attempts = attempts + 1 '
                               'WHERE table_id = ?', (table_id,))

    def mark_migrated(self, table_id: int, rows: Optional[int], nbytes: Optional[int],
                      started_at: Optional[str], finished_at: Optional[str],
                      duration_s: Optional[float], copied_by: Optional[str]) -> None:
        with self._write():
            self._conn.execute('UPDATE tables SET migrated = 1, errored = NULL WHERE id = ?',
                               (table_id,))
            self._facts(table_id, state='migrated', rows_copied=rows, bytes_copied=nbytes,
                        started_at=started_at, finished_at=finished_at,
                        duration_s=duration_s, last_error=None, last_sqlstate=None,
                        copied_by=copied_by, runner=None)

    def mark_errored(self, table_id: int, message: str, sqlstate: Optional[str],
                     finished_at: Optional[str] = None) -> None:
        with self._write():
            self._conn.execute('UPDATE tables SET errored = 1 WHERE id = ?', (table_id,))
            self._facts(table_id, state='errored', last_error=message, last_sqlstate=sqlstate,
                        finished_at=finished_at or utc_now(), runner=None)

    def mark_segments(self, table_id: int, done: int, total: int) -> None:
        """How many of a split table's segments are copied (for ``status list``)."""
        with self._write():
            self._facts(table_id, segments_done=done, segments_total=total)

    def mark_pending(self, table_id: int) -> None:
        """Undo 'running' for a table this runner did not get to copy (busy elsewhere)."""
        with self._write():
            self._facts(table_id, state=None, runner=None)

    # -- reading ---------------------------------------------------------------------
    def _select(self) -> str:
        has_facts = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                       "AND name = 'table_facts'").fetchone()
        if not has_facts:
            return _SELECT_ROWS_OLD
        # a manifest opened read-only may have the side table without the later columns
        have = {r[1] for r in self._conn.execute('PRAGMA table_info(table_facts)')}
        return _SELECT_ROWS.format(segments=', '.join(
            'f.%s' % name if name in have else 'NULL' for name, dummy in FACTS_ADDED))

    def rows(self) -> List[ManifestRow]:
        try:
            return [_row(r) for r in self._conn.execute(self._select() + ' ORDER BY t.id')]
        except sqlite3.Error as exc:
            raise _readable(self.path, exc)

    def source_tables(self) -> set:
        return {r[0] for r in self._conn.execute('SELECT source_table FROM tables')}

    def count(self) -> int:
        return self._conn.execute('SELECT count(*) FROM tables').fetchone()[0]


class _WriteTxn:
    """BEGIN IMMEDIATE ... COMMIT, turning 'database is locked' into a readable error."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self.outermost = False

    def __enter__(self) -> None:
        conn = self.manifest._conn
        if conn.in_transaction:  # inside Manifest.batch(): the batch commits
            return
        self.outermost = True
        try:
            conn.execute('BEGIN IMMEDIATE')
        except sqlite3.OperationalError as exc:
            raise _readable(self.manifest.path, exc)

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.outermost:
            return
        conn = self.manifest._conn
        if exc_type is None:
            try:
                conn.execute('COMMIT')
            except sqlite3.Error as err:
                conn.execute('ROLLBACK')
                raise _readable(self.manifest.path, err)
        else:
            conn.execute('ROLLBACK')
            if isinstance(exc, sqlite3.Error):
                raise _readable(self.manifest.path, exc)


def _readable(path: str, exc: Exception) -> ManifestError:
    text = str(exc)
    if 'locked' in text or 'busy' in text:
        return ManifestError('manifest %s is locked by another process (waited %ds): %s'
                             % (path, int(BUSY_TIMEOUT_S), text))
    if 'malformed' in text:
        return ManifestError('manifest %s is damaged (%s): restore it from a backup or generate '
                             'a new one; the ledger on the target still knows every copied table'
                             % (path, text))
    if 'readonly' in text or 'read-only' in text:
        return ManifestError('manifest %s is read-only: %s' % (path, text))
    return ManifestError('manifest %s: %s' % (path, text))

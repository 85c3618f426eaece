# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connection parameters and the connect() every front end uses.

Plain Python: no Ansible imports. Passwords live only in memory (``ConnParams.password``
is excluded from repr and from ``describe()``) and reach libpq as a keyword, never on a
command line.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterator, Optional, Tuple

try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without psycopg2
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = exc

from ansible_collections.icds.citus_migration.plugins.module_utils.common import defaults
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import (
    ConnectionFailed,
)

SSL_MODES = defaults.SSL_MODES


@dataclass(frozen=True)
class ConnParams:
    """Where and how to connect. ``None`` fields fall back to libpq defaults (PG* env, pgpass)."""

    host: Optional[str] = None
    port: Optional[int] = None
    user: Optional[str] = None
    dbname: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    sslmode: Optional[str] = None
    sslrootcert: Optional[str] = None
    sslcert: Optional[str] = None
    sslkey: Optional[str] = None
    connect_timeout: Optional[int] = 10
    application_name: str = 'icds.citus_migration'

    def libpq_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for psycopg2.connect (password included, in memory only)."""
        names = ('host', 'port', 'user', 'dbname', 'password', 'sslmode', 'sslrootcert',
                 'sslcert', 'sslkey', 'connect_timeout', 'application_name')
        return {n: getattr(self, n) for n in names if getattr(self, n) not in (None, '')}

    def describe(self) -> str:
        """A secret-free label such as ``user@host:5432/db`` for messages and logs."""
        user = self.user or '(default user)'
        host = self.host or '(local socket)'
        port = self.port or 5432
        return '%s@%s:%s/%s' % (user, host, port, self.dbname or '(default db)')

    def with_application_name(self, name: str) -> 'ConnParams':
        return replace(self, application_name=name)


def params_from_module_options(options: Dict[str, Any]) -> ConnParams:
    """Build ConnParams from the shared Ansible option names (see the doc fragment)."""
    return ConnParams(
        host=options.get('login_host') or None,
        port=options.get('login_port'),
        user=options.get('login_user') or None,
        dbname=options.get('login_db') or None,
        password=options.get('login_password') or None,
        sslmode=options.get('ssl_mode') or None,
        sslrootcert=options.get('ca_cert') or None,
        sslcert=options.get('ssl_cert') or None,
        sslkey=options.get('ssl_key') or None,
        connect_timeout=options.get('connect_timeout'),
    )


def source_target_from_module_options(options: Dict[str, Any]) -> Tuple[ConnParams, ConnParams]:
    """(source, target) of a module with the ``source`` dict option and top-level target options."""
    return params_from_module_options(options['source']), params_from_module_options(options)


def connect(params: ConnParams, role: str = 'database', autocommit: bool = False):
    """Open a psycopg2 connection; failures become ConnectionFailed naming the endpoint."""
    if not HAS_PSYCOPG2:
        raise ConnectionFailed('psycopg2 is not installed: %s' % PSYCOPG2_IMPORT_ERROR)
    try:
        conn = psycopg2.connect(**params.libpq_kwargs())
    except psycopg2.OperationalError as exc:
        reason = ' '.join(str(exc).split()) or exc.__class__.__name__
        raise ConnectionFailed('cannot connect to the %s %s: %s' % (role, params.describe(), reason))
    conn.autocommit = autocommit
    return conn


@contextmanager
def connection_pair(source: ConnParams, target: ConnParams,
                    autocommit: bool = False) -> Iterator[Tuple[Any, Any]]:
    """Connect to the source, then the target, and yield ``(src, tgt)``; both are closed on exit.

    If the target cannot be reached the source connection is closed before the
    ConnectionFailed propagates. Closing a connection rolls back its open transaction.
    """
    src = connect(source, role='source', autocommit=autocommit)
    try:
        tgt = connect(target, role='target', autocommit=autocommit)
        try:
            yield src, tgt
        finally:
            tgt.close()
    finally:
        src.close()

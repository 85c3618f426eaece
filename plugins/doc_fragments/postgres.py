# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every module of icds.citus_migration."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # The database the module connects to: which one (source or target) each module says.
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Host of the PostgreSQL server this module connects to. The module's description and
        notes say which database that is; it is the target (the Citus coordinator) for the
        modules that create or copy tables, and the SOURCE for
        M(icds.citus_migration.migration_manifest).
      - A path starting with C(/) is a Unix socket directory.
      - Defaults to libpq's default (C(PGHOST) or the local socket).
    type: str
    aliases: [ host ]
  login_port:
    description: Port of the PostgreSQL server.
    type: int
    default: 5432
    aliases: [ port ]
  login_user:
    description: Role to connect as. Defaults to libpq's default (C(PGUSER) or the OS user).
    type: str
    aliases: [ login ]
  login_password:
    description:
      - Password of O(login_user). Never logged. Prefer a pgpass file (C(PGPASSFILE)) or the
        C(PGPASSWORD) environment of the task.
    type: str
  login_db:
    description: Database to connect to.
    type: str
    aliases: [ db ]
  ssl_mode:
    description: libpq C(sslmode).
    type: str
    default: prefer
    choices: [ disable, allow, prefer, require, verify-ca, verify-full ]
  ca_cert:
    description: CA certificate file (libpq C(sslrootcert)) used to verify the server.
    type: path
    aliases: [ ssl_rootcert ]
  ssl_cert:
    description: Client certificate file (libpq C(sslcert)).
    type: path
  ssl_key:
    description: Client private key file (libpq C(sslkey)).
    type: path
  connect_timeout:
    description: Seconds to wait for a connection.
    type: int
    default: 10
requirements:
  - psycopg2
'''

    # A second connection, to the source database.
    SOURCE = r'''
options:
  source:
    description:
      - Connection to the source PostgreSQL database the tables are read from.
      - Takes the same keys as the module's own connection options.
    type: dict
    required: true
    suboptions:
      login_host:
        description: Host or Unix socket directory of the source server.
        type: str
        aliases: [ host ]
      login_port:
        description: Port of the source server.
        type: int
        default: 5432
        aliases: [ port ]
      login_user:
        description: Role to connect as on the source.
        type: str
        aliases: [ login ]
      login_password:
        description: Password of the source role. Never logged; prefer pgpass.
        type: str
      login_db:
        description: Source database.
        type: str
        aliases: [ db ]
      ssl_mode:
        description: libpq C(sslmode) for the source.
        type: str
        default: prefer
        choices: [ disable, allow, prefer, require, verify-ca, verify-full ]
      ca_cert:
        description: CA certificate file for the source.
        type: path
        aliases: [ ssl_rootcert ]
      ssl_cert:
        description: Client certificate file for the source.
        type: path
      ssl_key:
        description: Client private key file for the source.
        type: path
      connect_timeout:
        description: Seconds to wait for a connection to the source.
        type: int
        default: 10
'''

    # Where the tables are on each side (modules that read the source and write the target).
    SCHEMAS = r'''
options:
  source_schema:
    description: Schema of the source tables.
    type: str
    default: public
  target_schema:
    description: Schema of the target tables.
    type: str
    default: public
'''

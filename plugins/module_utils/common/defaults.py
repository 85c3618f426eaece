# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every default the CLI, the modules and the engine share, written once.

Module DOCUMENTATION states some of them in text for ansible-doc; a test
(tests/unit/test_defaults.py) checks that what it states equals these values.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# the exactly-once ledger and the split plans on the target (copy/ledger.py)
LEDGER_SCHEMA = 'icds_citus_migration'
# tables copied at once
PARALLEL = 1
# a source table larger than this on disk is copied in parts (1024-based sizes)
SPLIT_THRESHOLD = '1GB'
# a table copied in parts is cut into segments of about this size: the unit of work, of
# resume after a crash, and of the catch-up's comparison
SEGMENT_SIZE = '256MB'
# Citus target: a table smaller than this is written through one connection per worker.
# Citus opens a connection per shard for a COPY into a distributed table and drops them at
# commit: about 120 ms for 32 shards on the machine measured, against 4 ms through one
# connection per worker (benchmarks/README.md).
SMALL_TABLE_THRESHOLD = '64MB'
# schema of the tables on either side
SCHEMA = 'public'

# libpq's sslmode values, and the one used when none is given
SSL_MODES = ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')
SSL_MODE = 'prefer'
PORT = 5432
CONNECT_TIMEOUT = 10

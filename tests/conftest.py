"""Root pytest configuration: make the collection importable and load the fixtures."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_COLLECTIONS = os.path.join(ROOT, '.cache', 'dev_collections')


def _link_collection() -> None:
    """Expose the work tree as ansible_collections.icds.citus_migration for imports."""
    ns_dir = os.path.join(DEV_COLLECTIONS, 'ansible_collections', 'icds')
    link = os.path.join(ns_dir, 'citus_migration')
    os.makedirs(ns_dir, exist_ok=True)
    if not os.path.islink(link):
        os.symlink(ROOT, link)
    if DEV_COLLECTIONS not in sys.path:
        sys.path.insert(0, DEV_COLLECTIONS)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)


_link_collection()

pytest_plugins = [
    'tests.fixtures.postgres',
    'tests.fixtures.couchdb',
    'tests.citus_summary',
]

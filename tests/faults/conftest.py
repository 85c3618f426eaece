"""Fault-suite fixtures: dedicated servers (tests stop and restart them)."""

import os

import pytest

from tools.testkit.pg_cluster import PgServer
from tests.faults.common import FaultWorld

# how many seeded SIGKILL runs: small in `make test`, 20+ in `make faults`
FAULT_RUNS = int(os.environ.get('FAULT_RUNS', '5'))
FAULT_SEED_BASE = int(os.environ.get('FAULT_SEED_BASE', '1000'))


@pytest.fixture(scope='module')
def world():
    source = PgServer('fault-source').init().start()
    target = PgServer('fault-target').init().start()
    world = FaultWorld(source, target)
    try:
        world.setup()
        yield world
    finally:
        source.destroy()
        target.destroy()


@pytest.fixture
def pair(world, tmp_path):
    pair = world.fresh(tmp_path)
    yield pair
    world.drop(pair)

"""Fixtures shared by the tests of Google's official Python Cloud Bigtable client against Tabula.

The tests reach Tabula's gateway the way any Cloud Bigtable application reaches an emulator:
``BIGTABLE_EMULATOR_HOST=HOST:PORT`` in the environment, which makes the client use an
insecure channel and no credentials. The Rust driver (``cli/tests/it/python_client.rs``) starts
``tabula local`` (which runs a gateway), then runs pytest here with that variable and, for the
failover test, ``TABULA_LOCAL_DIR``, ``TABULA_BIN`` and ``TABULA_LOCK`` set.

Every test gets tables of its own (``unique_name``), so the tests do not depend on each other's
data, and deletes them at the end.
"""

import os
import uuid

import pytest
from google.api_core import exceptions
from google.cloud import bigtable
from google.cloud.bigtable.data import BigtableDataClient

# The gateway accepts any project and instance; these only have to be consistent.
PROJECT = "tabula-project"
INSTANCE = "tabula-instance"


def pytest_configure(config):
    if not os.environ.get("BIGTABLE_EMULATOR_HOST"):
        raise pytest.UsageError(
            "BIGTABLE_EMULATOR_HOST is not set: these tests need a running Tabula gateway "
            "(cargo nextest run -p tabula python_client:: starts one)"
        )


@pytest.fixture
def unique_name(request):
    """A table name no other test or run uses: the test's name and a random suffix."""
    base = request.node.name.replace("test_", "", 1)[:30]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def classic_client():
    """The classic ``google.cloud.bigtable.Client`` with table admin enabled."""
    client = bigtable.Client(project=PROJECT, admin=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def instance(classic_client):
    return classic_client.instance(INSTANCE)


@pytest.fixture(scope="session")
def data_client():
    """The newer synchronous ``google.cloud.bigtable.data.BigtableDataClient``."""
    client = BigtableDataClient(project=PROJECT)
    yield client
    client.close()


@pytest.fixture
def make_table(instance):
    """Creates classic ``Table`` objects on the cluster; deletes them when the test ends."""
    created = []

    def make(name, column_families, initial_split_keys=()):
        table = instance.table(name)
        table.create(initial_split_keys=list(initial_split_keys), column_families=column_families)
        created.append(table)
        return table

    yield make
    for table in created:
        try:
            table.delete()
        except exceptions.NotFound:
            pass

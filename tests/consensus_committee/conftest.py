"""Fixtures of the committee tests: ``chain`` (the committee chain, built ONCE for the whole package: a DKG and
two genesis packages) and ``net`` (three members on fresh engines in a test's own tmp dir)."""
from __future__ import annotations

import pytest

from tests.consensus_committee.harness import Net, make_chain


@pytest.fixture(scope="package")
def chain():
    return make_chain()


@pytest.fixture
def net(chain, tmp_path):
    n = Net(chain, tmp_path)
    yield n
    n.close()

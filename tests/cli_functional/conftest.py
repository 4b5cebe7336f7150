"""The one network every test of this package runs against: README's walkthrough, run verbatim (tests/cli_net.py),
plus a second wallet key ("bob"). Package-scoped: set up once for all the files here, torn down after the last."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli_net import Net, walkthrough_net


@pytest.fixture(scope="package")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    with walkthrough_net(tmp_path_factory.mktemp("readme-walkthrough")) as n:
        bob = ["--wallet", str(n.dir / "bob.popkeys"), "--password-file", str(n.dir / "pw")]
        n.keys["bob"] = n.json("wallet", "new", "--label", "bob", *bob)["address"]
        yield n

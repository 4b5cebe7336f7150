"""Supervision (issue 10, *Why*: "crashes are swallowed" — the node kept answering /api/status after the block
queue or the keyholder loop died): an essential task that fails stops the node with a logged reason and exit
code 5 (EXIT_TASK_FAILED); an optional one is restarted with backoff; /api/status reports health."""
from __future__ import annotations

import asyncio
import logging

import pytest

from node.__main__ import run_node
from node.errors import EXIT_TASK_FAILED, TaskFailed
from node.node import Node
from node.tools.testing import InProcessNode, make_test_chain, node_config, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("chain"), rounds=3)


def test_essential_task_failure_stops_the_node_with_exit_code_5(chain, tmp_path, caplog):
    """A real node runs with a real essential task that dies after start-up: ``run_node`` returns EXIT_TASK_FAILED and the
    CRITICAL log names the task and the error (before the fix the node went on serving)."""
    node = Node(node_config(tmp_path / "A", chain, keyholder=True))

    async def dies() -> None:
        await node.started.wait()
        raise OSError("disk gone")
    node.add_service(dies, "block-store-writer", essential=True)

    async def scenario() -> int:
        async with asyncio.timeout(60):
            return await run_node(node.config, node)
    with caplog.at_level(logging.CRITICAL, logger="popchain.node"):
        assert asyncio.run(scenario()) == EXIT_TASK_FAILED
    text = caplog.text
    assert "block-store-writer" in text and "disk gone" in text
    assert node.health()["ok"] is False
    assert node.health()["tasks"]["block-store-writer"]["state"] == "failed"


def test_node_run_raises_task_failed_and_optional_tasks_restart(chain, tmp_path):
    async def scenario():
        failures = []

        async def flaky() -> None:
            if len(failures) < 2:
                failures.append(1)
                raise RuntimeError("transient")
            await asyncio.Event().wait()
        a = InProcessNode(node_config(tmp_path / "B", chain))
        a.node.add_service(flaky, "flaky", essential=False)
        async with a:
            async def restarted():
                health = (await a.client.status())["health"]
                return health if health["tasks"]["flaky"]["restarts"] == 2 and \
                    health["tasks"]["flaky"]["state"] == "running" else None
            health = await wait_for(restarted, what="flaky restarted twice")
            assert health["ok"] is True
            assert {"blocks", "txs", "housekeeping"} <= {n for n, t in health["tasks"].items() if t["essential"]}

        b = Node(node_config(tmp_path / "C", chain))

        async def broken() -> None:
            raise ValueError("bug")
        b.add_service(broken, "essential-bug", essential=True)
        with pytest.raises(TaskFailed, match="essential-bug"):
            async with asyncio.timeout(60):
                await b.run()

    asyncio.run(scenario())

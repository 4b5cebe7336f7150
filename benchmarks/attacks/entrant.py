"""An attacker's miner side, through a node's ordinary HTTP API only (template → seal → POST entry → wait for
the beacon → open → POST opening), the path ``popchain miner run`` takes - but with the model, the timestamp and
the salt the attacker chooses. The sealing and opening themselves are benchmarks.attacks.protocol's.
"""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from benchmarks.attacks.protocol import open_entry, seal_entry
from chain.block import Block
from chain.crypto import Keypair
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import AnchorNotice, Beacon
from ml.shards import PublicTask
from node.tools.client import ApiCallError, NodeClient
from node.tools.testing import template_from_json


@dataclass
class Attempt:
    """One entry of the attacker: what it sealed and what the network made of it."""
    round: int
    block: Block
    champion_hash: bytes        # the model the round's blocks are scored against (the template's)
    status: str = "sealed"      # sealed | entry-refused:<code> | not-listed | opened:<node verdict> | refused:<code>
    opening: Block | None = None


class ApiEntrant:
    def __init__(self, client: NodeClient, keypair: Keypair, genesis: Genesis) -> None:
        self.client, self.keypair, self.genesis = client, keypair, genesis
        self._package: PublicTask | None = None

    async def open_round(self) -> int:
        return int((await self.client.status())["open_round"])

    async def notice(self, r: int) -> AnchorNotice | None:
        info = await self.client.round(r)
        return AnchorNotice.decode(bytes.fromhex(info["notice"])) if info.get("notice") else None

    async def enter(self, model: bytes, *, timestamp: int | None = None, salt: bytes | None = None) -> Attempt | None:
        """Seal ``model`` on the node's template for the open round and post the entry (None: no round open)."""
        try:
            tpl = template_from_json(await self.client.template(self.keypair.public))
        except ApiCallError:
            return None
        if timestamp is not None:
            tpl = dataclasses.replace(tpl, timestamp=timestamp)
        block, entry = seal_entry(tpl, model, self.keypair, salt)
        attempt = Attempt(tpl.round, block, tpl.champion_model_hash)
        try:
            await self.client.send_entry(entry.encode())
        except ApiCallError as exc:
            attempt.status = f"entry-refused:{exc.code}"
        return attempt

    async def beacon(self, r: int, timeout: float = 120.0) -> tuple[Beacon, tuple[bytes, ...]] | None:
        async with asyncio.timeout(timeout):
            while True:
                info = await self.client.round(r)
                if info.get("beacon"):
                    return (Beacon.decode(bytes.fromhex(info["beacon"])),
                            tuple(bytes.fromhex(m) for m in info.get("activations") or ()))
                if info.get("status") in ("void", "crowned", "idle"):
                    return None
                await asyncio.sleep(0.05)

    async def open(self, attempt: Attempt) -> Attempt:
        """After round ``attempt.round``'s beacon: open the sealed block if listed, post it, record the verdict."""
        if attempt.status != "sealed":
            return attempt
        try:
            found = await self.beacon(attempt.round)
        except TimeoutError:
            found = None
        if found is None or attempt.block.hash not in found[0].entries:
            attempt.status = "not-listed"
            return attempt
        beacon, activations = found
        champion = await self.client.model(attempt.champion_hash.hex())
        opened = await asyncio.to_thread(open_entry, attempt.block, beacon, genesis=self.genesis, champion=champion,
                                         task=await self.package(), activations=activations)
        attempt.opening = opened
        try:
            res = await self.client.send_opening(opened.encode())
            attempt.status = f"opened:{res.get('status', 'accepted')}"
        except ApiCallError as exc:
            attempt.status = f"refused:{exc.code}"
        return attempt

    async def package(self) -> PublicTask:
        if self._package is None:
            full = await self.client.task_info(0, package=True)
            self._package = PublicTask.decode(bytes.fromhex(full["package"]))
        return self._package

    async def champion_model(self) -> bytes:
        champ = (await self.client.champion())["champion"]
        return await self.client.model(champ["model_hash"])


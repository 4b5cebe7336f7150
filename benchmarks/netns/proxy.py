"""The link proxy: one process per node namespace forwards that node's outbound links with emulated delay, loss
and partitions (this kernel has no netem qdisc, so it is done here, in user space).

``ip netns exec NS python -m benchmarks.netns.proxy SPEC.json``; SPEC is ``{"links": [{"listen": [host, port],
"to": [host, port], "delay_ms": d, "loss": p, "cross": bool, "seed": s}, ...]}``. The node dials ``listen``
(a 127.77.x.y address inside its own namespace); the proxy dials ``to`` (the peer's real address on the bridge),
so the peer sees the connection come from this node's own address. Per direction and per chunk read:

- delay: each chunk is delivered ``delay_ms`` after it was read, in order (a FIFO with a release time);
- loss: TCP never loses data, it retransmits: a "lost" chunk (probability ``loss``) is delivered
  RETRANSMIT_S later instead (the Linux minimum RTO, 200 ms), and holds up the chunks behind it, as a
  retransmission does (head-of-line blocking);
- partition, two kinds, on the links marked ``cross`` only: SIGUSR1 *stalls* them — the proxy stops reading and
  delivering and new connections wait (a pulled cable shorter than the timeouts: TCP holds its data, a SYN is
  retried), and on heal the held data flows on; SIGHUP *resets* them — every connection on them is aborted (RST)
  and new ones are aborted as they come (the peer's host gone), so the nodes must notice, and re-dial after the
  heal. SIGUSR2 heals either.

It forwards bytes only; it knows nothing of the wire protocol. It prints one line "ready" once listening.
"""
from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

RETRANSMIT_S = 0.2
CHUNK = 65536


@dataclass
class Link:
    listen: tuple[str, int]
    to: tuple[str, int]
    delay_s: float
    loss: float
    cross: bool
    rng: random.Random


class Cut:
    """The partition switch shared by all links of this process."""

    def __init__(self) -> None:
        self.healed = asyncio.Event()
        self.healed.set()
        self.reset = False
        self.crossing: set[asyncio.StreamWriter] = set()   # open connections' writers on cross links

    async def wait(self, link: Link) -> None:
        if link.cross:
            await self.healed.wait()

    def stall(self) -> None:
        self.healed.clear()

    def cut_reset(self) -> None:
        self.reset = True
        for w in list(self.crossing):
            w.transport.abort()
        self.crossing.clear()

    def heal(self) -> None:
        self.reset = False
        self.healed.set()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: Link, cut: Cut) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    last = 0.0

    async def rx() -> None:
        nonlocal last
        while True:
            await cut.wait(link)
            data = await src.read(CHUNK)
            if not data:
                break
            extra = RETRANSMIT_S if link.rng.random() < link.loss else 0.0
            last = max(last, loop.time() + link.delay_s + extra)
            queue.put_nowait((last, data))
        queue.put_nowait(None)

    async def tx() -> None:
        while (item := await queue.get()) is not None:
            at, data = item
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await cut.wait(link)
            dst.write(data)
            await dst.drain()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(rx())
        tg.create_task(tx())


async def _serve(link: Link, cut: Cut, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    up_writer = None
    if link.cross and cut.reset:
        writer.transport.abort()
        return
    try:
        await cut.wait(link)
        up_reader, up_writer = await asyncio.open_connection(*link.to)
        if link.cross:
            cut.crossing.update((writer, up_writer))
        a = asyncio.create_task(_pipe(reader, up_writer, link, cut))
        b = asyncio.create_task(_pipe(up_reader, writer, link, cut))
        done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:   # one side closed: the connection is over in both directions
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    except (OSError, ExceptionGroup):
        pass
    finally:
        for w in (writer, up_writer):
            if w is not None:
                cut.crossing.discard(w)
                w.close()


async def main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    cut = Cut()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, cut.stall)
    loop.add_signal_handler(signal.SIGHUP, cut.cut_reset)
    loop.add_signal_handler(signal.SIGUSR2, cut.heal)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    servers = []
    for item in spec["links"]:
        link = Link(tuple(item["listen"]), tuple(item["to"]), item["delay_ms"] / 1000, item["loss"],
                    bool(item["cross"]), random.Random(item["seed"]))

        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, link: Link = link) -> None:
            await _serve(link, cut, r, w)
        servers.append(await asyncio.start_server(handler, *link.listen))
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))

"""``popchain miner run``: the network miner's command-line front end, and the public surface of the miner.

It turns the command's options into a candidate source (``make_source``: a built-in family or the ``auto``
tournament, ``--trainer module:function`` or ``--model-file``), connects to the node (retrying a node that
restarts), prints one line per round (or JSON) and a training progress line, and exits EXIT_NO_OPEN_TASK when no
task of the chain is open. The round loop itself is node.tools.miner_loop.Miner (re-exported here with its
report types, so ``from node.tools.miner import Miner`` keeps working).

Does not: play rounds (node.tools.miner_loop), keep the bond account (node.tools.miner_bond), train models
(node.tools.miner_models) or do consensus work (consensus.mining).
"""
from __future__ import annotations

import sys

from chain.crypto import Keypair
from consensus.protocol.genesis import load_genesis
from node.errors import EXIT_NO_OPEN_TASK  # `miner run` stopped: no task of the chain is open
from node.tools.client import ApiCallError, NodeClient
from node.tools.events_client import ChangeSignal
from node.tools.miner_loop import (
    NO_OPEN_TASK,
    WAIT_ROUNDS,
    Miner,
    TaskState,
    next_task,
    template_from_json,
)
from node.tools.miner_models import CandidateSource, Families, ModelFile, SourceError, UserTrainer
from node.tools.miner_report import RoundReport, TrainingProgress, progress_printer
from node.tools.mining import DEFAULT_MAX_ROWS

__all__ = ["EXIT_NO_OPEN_TASK", "NO_OPEN_TASK", "WAIT_ROUNDS", "Miner", "RoundReport", "TaskState",
           "TrainingProgress", "make_source", "next_task", "run_miner_cli", "template_from_json"]


def make_source(*, family: str = "auto", trainer: str | None = None, model_file: str | None = None
                ) -> CandidateSource:
    """The candidate source ``miner run`` options ask for (SourceError in words otherwise)."""
    if trainer and model_file:
        raise SourceError("--trainer and --model-file exclude each other")
    if (trainer or model_file) and family != "auto":
        raise SourceError("--model chooses a built-in family; it cannot be combined with --trainer or --model-file")
    if trainer:
        return UserTrainer(trainer)
    if model_file:
        return ModelFile(model_file)
    return Families(family)


async def run_miner_cli(node_url: str, keypair: Keypair, *, source: CandidateSource, rounds: int, as_json: bool,
                        retry_s: float = 0.0, max_rows: int = DEFAULT_MAX_ROWS, enter: str = "expected") -> int:
    """``popchain miner run``: mine until done or Ctrl-C, one line per round. A node that goes away (a restart)
    is retried for ``retry_s`` seconds with one status line on stderr; the round in play may be lost, the
    miner carries on with the next one."""
    import aiohttp
    try:
        async with NodeClient(node_url, retry_s=retry_s,
                              on_retry=lambda line: print(line, file=sys.stderr, flush=True)) as client:
            return await _mine(client, keypair, source=source, rounds=rounds, as_json=as_json, max_rows=max_rows,
                               enter=enter)
    except aiohttp.ClientConnectionError as exc:
        print(f"popchain: error: cannot reach the node at {node_url} ({type(exc).__name__}); is it running?",
              file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"popchain: error: the node at {node_url} stopped answering (timeout)", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError, ApiCallError) as exc:
        print(f"popchain: error: node {node_url}: {exc}", file=sys.stderr)
        return 1

async def _mine(client: NodeClient, keypair: Keypair, *, source: CandidateSource, rounds: int, as_json: bool,
                max_rows: int, enter: str) -> int:
    import json

    from chain.address import address_of, encode_address
    genesis = load_genesis(await client.genesis())
    address = encode_address(address_of(keypair.public))
    print(f"mining on {genesis.chain_id} as {address} with {source.label}", file=sys.stderr)

    def show(report: RoundReport) -> None:
        if not as_json and sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr, flush=True)   # clear a live training line first
        print(json.dumps(report.__dict__) if as_json else report.line(), flush=True)
    async with ChangeSignal(client.base_url, kinds=("round", "beacon", "verdict")) as changes:
        miner = Miner(client, keypair, genesis, source=source, seed=int.from_bytes(keypair.public[:2], "big"),
                      max_rows=max_rows, enter=enter, on_report=show,
                      on_progress=None if as_json else progress_printer(sys.stderr), changes=changes)
        status = await client.status()
        if status["round_phase"] == "closed":
            print(f"no task is open yet: waiting up to {WAIT_ROUNDS} rounds ({WAIT_ROUNDS * miner.round_seconds():.0f} "
                  "s) for an announced task to activate ...", file=sys.stderr, flush=True)
            status = await miner.wait_for_open_task(status)
            if status["round_phase"] == "closed":
                print(f"popchain: {NO_OPEN_TASK}", file=sys.stderr)
                return EXIT_NO_OPEN_TASK
        first_task = next_task(status)
        await miner.prefetch(first_task)
        family = miner.built_family(first_task or 0)
        print(f"ready: first candidate trained (task {first_task}, {family if family is not None else '-'})",
              file=sys.stderr, flush=True)
        reports = await miner.run(rounds)
    won = sum(r.won for r in reports)
    print(f"played {len(reports)} rounds, won {won}", file=sys.stderr)
    if miner.closed:
        print(f"popchain: {NO_OPEN_TASK}", file=sys.stderr)
        return EXIT_NO_OPEN_TASK
    return 0

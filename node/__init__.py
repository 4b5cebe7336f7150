"""popchain node/: the asyncio peer-to-peer node — gossip, sync, peers, keyholder service, HTTP API.

What it does: one aiohttp application pair per node (peer websocket at ``/p2p`` + ``/metrics`` on the peer
port; the JSON API at ``/api/...`` + ``/metrics`` on the API port), the wire format and its caps
(``node.wire``), handshake / ping / flood limits / misbehaviour (``node.peer``), announce-then-fetch gossip
(``node.gossip``), headers-first sync (``node.sync``), the mempool (``node.mempool``), the keyholder service
(``node.keyholder_service``), LAN discovery (``node.discovery``), the datadir (``node.datadir``), the API
(``node.api``) and its client (``node.tools.client.NodeClient``). ``python -m node run`` starts a node
(``node.config.add_node_run_arguments`` + ``node.__main__.run_node`` are reused by cli.py).

What it does NOT do: decide validity. Every verdict on a block, entry, notice or beacon comes from
consensus.engine.Engine (called on one dedicated worker thread, ``node.worker``), every transfer check from
chain.state; node/ only chooses what to keep, fetch, relay and whom to drop (policy, PROTOCOL §4). It holds no
wallet keys and trains no models (miners use the API; ``node.tools.testing`` has a scripted test miner).
"""

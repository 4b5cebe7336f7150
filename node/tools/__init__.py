"""popchain node/tools/: client-side tooling and the test kit — everything that talks to a node from outside.

What it does: ``client`` (NodeClient, the async HTTP client of the API), ``miner`` (the network miner behind
``popchain miner run``), ``demo`` (``popchain demo``), ``genesis_setup`` (genesis/keyholder/holdout files for
``popchain genesis create``) and ``testing`` (in-process nodes and a scripted miner for tests and benchmarks).

What it does NOT do: run inside the daemon. The node daemon (the rest of node/) never imports this package;
tools reach a node only through its public API, as any user's program would.
"""

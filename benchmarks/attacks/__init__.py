"""Attackers of issue 18, each as its own process (or, for the long runs, in the in-process arena), with the
harness that runs them against real node processes and turns what the honest nodes did into figures.

Attackers and their positions:
- ``racer``        a peer on the wire: races corrupt copies of genuine blocks (four tamper kinds) to victims;
- ``thief``        a funded miner that eclipses a victim miner's node and re-enters its withheld models;
- ``withholder``   a peer with many connections: announces blocks first and never delivers (nothing invalid);
- ``syncpoison``   a peer of a node catching up: answers its block requests with corrupt copies;
- ``squatter``     a miner with many funded keys: voids rounds past the forfeit cap; the bond dodger;
- ``grinder``      equal-stake miners grinding salts to win listing ties;
- ``late_stamper`` a winning miner stamping its block as late as accepted;
- ``copycat``      a sybil entering perturbed copies of the champion.

Protocol knowledge lives in ``protocol`` only (how to tamper a block, make an entry, rank a listing, stamp, and
attribute a model): change it there when the rules change. ``livenet`` starts the network, ``phases`` runs an
attacker on it, ``observe`` reads the honest nodes' logs and APIs, ``arena`` is the in-process chain;
``live_figures`` and ``sim_figures`` are the ``popchain bench`` modules.
"""

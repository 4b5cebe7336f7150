"""The block explorer and leaderboard every node serves at ``/`` on its API port (README "Explorer").

What it does: HTML pages with stable URLs, rendered in the browser by one plain script (static/app.js; no CDN,
no build step, SVG charts drawn by the page) from the node's own JSON API, and kept live by ``/api/events``
(node.events). Its own JSON: leaderboard (champion lineage with each model's accuracy on its round's revealed
shard), miner wins and rewards, round phase timeline, search. ``register(app, deps)`` is the only entry point;
``deps`` is the narrow ``ExplorerDeps`` Protocol (node.explorer.deps).

What it does not do: write anything, hold consensus state of its own, or run code it received (every value is
put into the page as text, never as markup).
"""
from node.explorer.deps import ExplorerDeps, NodeExplorerDeps
from node.explorer.routes import register

__all__ = ["ExplorerDeps", "NodeExplorerDeps", "register"]

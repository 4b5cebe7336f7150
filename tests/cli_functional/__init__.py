"""Every `popchain` leaf command and documented flag, run as a subprocess against ONE real network shared by the
package (conftest.py: a package-scoped fixture, set up once for every file here): README's walkthrough, run
verbatim (tests/walkthrough.py) — a 2-of-3 keyholder committee, an ordinary node, a miner, a second task
(digits, with a bounty) and an extension of the first. Human output, --json output, exit codes, each error path
as one line on stderr without a traceback, and issue 20's multi-task properties: audit per task, each model under
its own task, every round's page, unique prefixes, units and fees, the competition pages in a real browser.

Test files by subject, run in name order (the numbers keep the sequence): walkthrough, offline commands, chain
reads, models, audit, explorer (metrics and peers too), restart — it stops the ordinary node under the running
miner and a waiting `wallet send`, so it runs last on the network — and coverage: the walkers fail if a leaf
command of cli's argparse tree has no functional test (the ``covers`` registry, helpers.py) or an option
appears in no test.
"""

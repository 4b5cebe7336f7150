"""The keyholder committee's pure state machine (consensus.keyholder.Member): three members of a DKG committee
on real engines (LevelDB in tmp dirs, real Ed25519 and group arithmetic), messages delivered by the test, an
explicit clock (harness.py; the committee chain is built once for the package, conftest.py). Attackers first: a
dead leader, n − t members stopped, a leader dropping an entry, a member signing two notices, a member releasing
a corrupted share, a byzantine leader proposing many contents (hypothesis): at most one content ever gathers t
signatures, and a bad share is refused and its member named.

By subject: test_liveness (rounds reveal while t members run), test_byzantine (equivocation and dropped entries
leave evidence), test_shares (threshold release), test_settlement (one settlement whoever saw an opening),
test_tasks (a task sealed to the committee revives an exhausted chain).
"""

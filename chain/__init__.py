"""chain — popchain's ledger core: canonical encoding, keys and hashing, addresses, signed transfers,
headers and blocks, account state with its state root, the LevelDB chain store, and the encrypted wallet.

What it does: encodes/decodes every ledger object canonically (chain.encoding), signs and verifies with
Ed25519 (chain.crypto, batch verification on a thread pool), applies transfers to accounts (chain.state),
stores blocks/accounts/undo records with one synced WriteBatch per connect/disconnect and a datadir lock
(chain.store; its key layout and reads in chain.store_read), keeps keys encrypted on disk (chain.wallet).

What it does NOT do: no proof-of-performance rules (beacons, entries, scoring, fork choice, genesis
configuration live in consensus/), no model format (ml/ owns it; chain/ stores model bytes and the consensus
payload as opaque bytes), no networking, no clock. It imports nothing else from popchain.
"""

"""consensus.keyholder: the keyholder role (PROTOCOL §3.10, §3.14) — who opens rounds with anchor notices,
lists the entries and reveals each round's shard key in its beacon, driven by an explicit ``now``.

Played by one trusted process holding the genesis threshold of keys and every shard key (``Keyholder``, from
``load_keyholder``) or by a t-of-n committee whose secret came from a distributed key generation
(``DkgMember``): its members co-sign, and release DLEQ-proven shares of each round's point from which t give
the shard key (``Member``, from ``load_member``, which says None when the single keyholder should run). Both apply the same entry, settlement and reveal-time
rules on a journal in the store's meta keys (synced before anything is returned), so a restart never signs
twice. The secret files (keyholder file, key file, member file) are read and written here too.

What it does NOT do: networking or timers (node/'s keyholder and committee services), consensus state (it
drives ``consensus.engine.Engine`` and reads it), or the message formats (consensus.protocol).
"""
from consensus.keyholder._base import MAX_CANDIDATES, admit_ranked, settle_window
from consensus.keyholder._dkg import DkgError, DkgMember
from consensus.keyholder._files import (
    MemberSecret,
    check_member,
    is_member_file,
    key_file,
    keyholder_file,
    load_key_file,
    load_keyholder_file,
    load_member_file,
    member_file,
    write_secret,
)
from consensus.keyholder._load import GroupShares, engine_locator, load_keyholder, load_member
from consensus.keyholder._member import Fetch, Member, Out, Refusal, ShareSource, failover_ms
from consensus.keyholder._single import Action, Done, Keyholder, RoundClosed

__all__ = [
    "MAX_CANDIDATES", "Action", "DkgError", "DkgMember", "Done", "Fetch", "GroupShares", "Keyholder", "Member",
    "MemberSecret", "Out", "Refusal", "RoundClosed", "ShareSource", "admit_ranked", "check_member",
    "engine_locator", "failover_ms", "is_member_file", "key_file", "keyholder_file", "load_key_file",
    "load_keyholder", "load_keyholder_file", "load_member", "load_member_file", "member_file", "settle_window",
    "write_secret",
]

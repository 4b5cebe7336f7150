"""consensus.keyholder: the keyholder role (PROTOCOL §3.10, §3.14) — who opens rounds with anchor notices,
lists the entries and reveals each round's shard key in its beacon, driven by an explicit ``now``.

Played by one process holding the genesis threshold of keys (``Keyholder``, from ``load_keyholder``) or by a
t-of-n committee whose members co-sign and release Shamir shares of the key (``Member``, from ``load_member``,
which says None when the single keyholder should run). Both apply the same entry, settlement and reveal-time
rules on a journal in the store's meta keys (synced before anything is returned), so a restart never signs
twice. The secret files (keyholder file, member file, share files) are read and written here too.

What it does NOT do: networking or timers (node/'s keyholder and committee services), consensus state (it
drives ``consensus.engine.Engine`` and reads it), or the message formats (consensus.protocol).
"""
from consensus.keyholder._base import MAX_CANDIDATES, admit_ranked, settle_window
from consensus.keyholder._files import (
    SHARE_DIR,
    CommitteeShares,
    MemberSecret,
    MemberShares,
    add_share_file,
    check_member,
    committee_shares,
    deal_batch,
    genesis_locator,
    install_share_file,
    is_member_file,
    keyholder_file,
    load_keyholder_file,
    load_member_file,
    load_share_file,
    member_file,
    scan_share_dir,
    share_file,
)
from consensus.keyholder._load import WholeKeyShares, engine_locator, load_keyholder, load_member
from consensus.keyholder._member import Fetch, Member, Out, Refusal, ShareSource, failover_ms
from consensus.keyholder._single import Action, Done, Keyholder, RoundClosed

__all__ = [
    "MAX_CANDIDATES",
    "SHARE_DIR",
    "Action",
    "CommitteeShares",
    "Done",
    "Fetch",
    "Keyholder",
    "Member",
    "MemberSecret",
    "MemberShares",
    "Out",
    "Refusal",
    "RoundClosed",
    "ShareSource",
    "WholeKeyShares",
    "add_share_file",
    "admit_ranked",
    "check_member",
    "committee_shares",
    "deal_batch",
    "engine_locator",
    "failover_ms",
    "genesis_locator",
    "install_share_file",
    "is_member_file",
    "keyholder_file",
    "load_keyholder",
    "load_keyholder_file",
    "load_member",
    "load_member_file",
    "load_share_file",
    "member_file",
    "scan_share_dir",
    "settle_window",
    "share_file",
]

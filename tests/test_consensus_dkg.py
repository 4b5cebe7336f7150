"""The keyholders' cryptography (consensus.protocol.group / dkg / release, consensus.keyholder.DkgMember;
PROTOCOL §3.14), attackers first: a dealer that deals a bad share, lies about its commitments or its proof of
knowledge; a member that complains falsely; a record with a signature missing or a commitment changed; a
released share forged, moved to another member, point or chain; hostile bytes for every decoder. Then the
properties: any t shares of the group secret give one σ (unique VRF output), t − 1 do not, and a sealed key
comes back only from the committee's σ."""
from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.crypto import Keypair
from chain.encoding import pack, unpack
from chain.errors import DecodeError, RuleError
from consensus.keyholder import DkgError, DkgMember
from consensus.protocol.dkg import (
    COMPLAIN,
    DEAL,
    JOIN,
    CommitteeKey,
    Deal,
    DkgMsg,
    Session,
    Transcript,
    complaint_context,
    decode_committee_key,
    encode_complaints,
)
from consensus.protocol.group import (
    BASE,
    GroupError,
    L,
    base_mul,
    check_point,
    check_scalar,
    hash_to_point,
    lagrange_at_zero,
    mul,
    prove_dleq,
    scalar_bytes,
    verify_dleq,
)
from consensus.protocol.release import (
    Leak,
    Partial,
    Release,
    check_partial,
    check_release,
    combine,
    decode_seal_material,
    make_partial,
    seal,
    seal_keys,
    unseal,
    vrf_output,
    vrf_point,
)


def counter_rng(seed: bytes):
    state = {"i": 0}

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + state["i"].to_bytes(8, "big")).digest()
            state["i"] += 1
        return out[:n]
    return rng


def keys(n: int, label: str = "k") -> list[Keypair]:
    return sorted((Keypair.from_seed(hashlib.sha256(f"dkg-test/{label}/{i}".encode()).digest()) for i in range(n)),
                  key=lambda k: k.public)


def run(n: int, t: int, *, cheat=None, label: str = "k", seed: bytes = b"s"):
    """A whole ceremony in process. ``cheat(members, transcript, phase)`` may replace messages before a phase
    is added (it returns the messages to add for that phase)."""
    kps = keys(n, label)
    session = Session("test", tuple(k.public for k in kps), t, hashlib.sha256(seed).digest())
    members = [DkgMember(session, k, counter_rng(seed + bytes([i]))) for i, k in enumerate(kps)]
    tr = Transcript(session)
    for phase, make in ((JOIN, lambda m: m.join()), (DEAL, lambda m: m.deal(tr)), (COMPLAIN, lambda m: m.complain(tr))):
        msgs = [make(m) for m in members]
        if cheat is not None:
            msgs = cheat(members, tr, phase, msgs)
        for msg in msgs:
            tr.add(msg)
    return session, members, tr


def finish(members, tr) -> CommitteeKey:
    signed = [m.sign(tr) for m in members]
    sigs = {m.keypair.public: unpack(msg.body, max_size=128)[0] for m, (msg, _) in zip(members, signed)}
    return members[0].finish(signed[0][1], sigs)


@pytest.fixture(scope="module")
def committee():
    _session, members, tr = run(5, 3)
    return finish(members, tr), members


# ---------------------------------------------------------------- the group and its proofs


def test_points_and_scalars_refuse_what_is_not_in_the_group():
    assert check_point(BASE) == BASE
    identity = (1).to_bytes(32, "little")
    small = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa")  # order 8
    for bad in (identity, small, bytes(32), b"\xff" * 32, BASE[:31], b"x"):
        with pytest.raises(GroupError):
            check_point(bad)
    with pytest.raises(GroupError):
        check_scalar(L.to_bytes(32, "little"))
    assert check_scalar(scalar_bytes(L - 1)) == L - 1


def test_hash_to_point_is_a_valid_point_nobody_chose():
    a, b = hash_to_point("t", b"a"), hash_to_point("t", b"b")
    assert a != b and check_point(a) == a and hash_to_point("t", b"a") == a
    assert vrf_point(b"g" * 32, b"g" * 32, 1) != vrf_point(b"g" * 32, b"g" * 32, 2)
    assert vrf_point(b"g" * 32, b"g" * 32, 1) != vrf_point(b"h" * 32, b"g" * 32, 1)


@settings(max_examples=30, deadline=None)
@given(x=st.integers(1, L - 2), ctx=st.binary(max_size=8), which=st.integers(0, 6))   # x + 1 is no zero scalar
def test_a_dleq_proof_holds_for_its_statement_only(x, ctx, which):
    h = hash_to_point("t", ctx)
    x1, x2 = base_mul(x), mul(x, h)
    proof = prove_dleq(x, BASE, x1, h, x2, ctx)
    assert verify_dleq(proof, BASE, x1, h, x2, ctx)
    other = hash_to_point("other", ctx)
    bad = [((proof[0] + 1) % L, proof[1]), (proof[0], (proof[1] + 1) % L)]
    cases = [(bad[0], BASE, x1, h, x2, ctx), (bad[1], BASE, x1, h, x2, ctx), (proof, BASE, x1, h, mul(x + 1, h), ctx),
             (proof, BASE, base_mul(x + 1), h, x2, ctx), (proof, BASE, x1, other, x2, ctx),
             (proof, BASE, x1, h, x2, ctx + b"!"), (proof, BASE, x1, h, b"\x00" * 32, ctx)]
    assert not verify_dleq(*cases[which])


@settings(max_examples=25, deadline=None)
@given(coeffs=st.lists(st.integers(0, L - 1), min_size=1, max_size=6), data=st.data())
def test_lagrange_at_zero_recovers_the_constant_term(coeffs, data):
    t = len(coeffs)
    xs = data.draw(st.lists(st.integers(1, 50), min_size=t, max_size=t, unique=True))
    f = lambda x: sum(c * pow(x, k, L) for k, c in enumerate(coeffs)) % L
    assert sum(lam * f(x) for lam, x in zip(lagrange_at_zero(xs), xs)) % L == coeffs[0]


# ---------------------------------------------------------------- the key generation


@pytest.mark.parametrize("n,t", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_every_t_subset_of_shares_gives_the_group_secret(n, t):
    _, members, tr = run(n, t, label=f"{n}{t}")
    key = finish(members, tr)
    assert key.qual == tuple(range(1, n + 1))
    secrets = set()
    for subset in itertools.combinations(members, t):
        idx = [m.me for m in subset]
        secrets.add(sum(lam * m.share for lam, m in zip(lagrange_at_zero(idx), subset)) % L)
    (s,), = [tuple(secrets)]
    assert base_mul(s) == key.group_key
    for m in members:
        assert base_mul(m.share) == key.share_key(m.me)
    if t > 1:   # t − 1 shares read as a lower-degree polynomial give another value: they determine nothing
        some = members[:t - 1]
        guess = sum(lam * m.share for lam, m in zip(lagrange_at_zero([m.me for m in some]), some)) % L
        assert guess != s


def test_a_dealer_that_deals_a_bad_share_is_disqualified_by_a_complaint_anyone_checks():
    def cheat(members, tr, phase, msgs):
        if phase == DEAL:          # dealer 2 gives member 4 a wrong share (everything else well formed)
            d = Deal.decode(msgs[1].body, tr.session)
            cts = list(d.ciphertexts)
            cts[3] = bytes(a ^ b for a, b in zip(cts[3], b"\x01" + bytes(31)))
            msgs[1] = members[1]._msg(DEAL, replace(d, ciphertexts=tuple(cts)).encode())
        return msgs
    _, members, tr = run(5, 3, cheat=cheat, label="bad")
    out = tr.outcome()
    assert out.qual == (1, 3, 4, 5) and 2 in out.disqualified and "member 4" in out.disqualified[2]
    key = finish(members, tr)              # the others go on without dealer 2's contribution
    assert key.qual == (1, 3, 4, 5)
    # an auditor with only the public transcript reaches the same verdict
    auditor = Transcript(tr.session)
    for msg in tr.msgs.values():
        auditor.add(DkgMsg.decode(msg.encode()))
    assert auditor.outcome().qual == out.qual and auditor.hash() == out.transcript_hash


def test_a_false_complaint_disqualifies_nobody():
    def cheat(members, tr, phase, msgs):
        if phase == COMPLAIN:      # member 3 accuses dealer 1 with the real DH key: the share checks out
            liar = members[2]
            deal = tr.deal(1)
            shared = mul(liar._enc, deal.ephemeral)
            proof = prove_dleq(liar._enc, BASE, tr.joins()[3].enc, deal.ephemeral, shared,
                               complaint_context(tr.session.id, 1, 3))
            msgs[2] = liar._msg(COMPLAIN, encode_complaints([(1, shared, proof)]))
        return msgs
    _, _members, tr = run(3, 2, cheat=cheat, label="false")
    out = tr.outcome()
    assert out.qual == (1, 2, 3) and (3, 1) in out.false_complaints


@pytest.mark.parametrize("lie", ["commitments", "pok"])
def test_a_dealer_lying_about_its_polynomial_is_disqualified(lie):
    def cheat(members, tr, phase, msgs):
        if phase == DEAL:
            d = Deal.decode(msgs[0].body, tr.session)
            d = (replace(d, commitments=(base_mul(7),) + d.commitments[1:]) if lie == "commitments"
                 else replace(d, pok=(d.pok[0], (d.pok[1] + 1) % L)))
            msgs[0] = members[0]._msg(DEAL, d.encode())
        return msgs
    _, _members, tr = run(3, 2, cheat=cheat, label=lie)
    assert tr.outcome().qual == (2, 3)


def test_a_missing_member_stops_the_ceremony_by_name():
    kps = keys(3, "miss")
    session = Session("test", tuple(k.public for k in kps), 2, bytes(32))
    members = [DkgMember(session, k) for k in kps]
    tr = Transcript(session)
    for m in members[:2]:
        tr.add(m.join())
    with pytest.raises(DkgError, match=r"\[3\] did not join"):
        members[0].deal(tr)


def test_messages_of_another_session_or_signer_are_refused():
    session, _members, tr = run(3, 2, label="sess")
    other = Session("test", session.keyholders, 2, b"\x07" * 32)
    msg = tr.msgs[(JOIN, 1)]
    with pytest.raises(DecodeError):
        msg.check(other)
    forged = replace(msg, member=2)
    with pytest.raises(DecodeError):
        forged.check(session)
    assert not tr.add(msg)      # the first per (phase, member) is kept


def test_the_committee_key_needs_every_keyholder_signature(committee):
    key, _ = committee
    assert decode_committee_key(key.encode()) == key
    with pytest.raises(RuleError, match="every keyholder"):
        replace(key, signatures=key.signatures[1:]).check()
    tampered = replace(key, commitments=(base_mul(5),) + key.commitments[1:])
    with pytest.raises(RuleError, match="does not verify"):
        tampered.check()
    with pytest.raises(RuleError, match="fewer than the threshold"):
        replace(key, qual=(1, 2)).check()


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300))
def test_decoders_raise_only_typed_errors(data):
    for decode in (decode_committee_key, DkgMsg.decode, Partial.decode, Release.decode, Leak.decode,
                   lambda d: decode_seal_material(d, 1), Session.decode):
        try:
            decode(data)
        except (DecodeError, RuleError):
            pass


# ---------------------------------------------------------------- releases: the threshold VRF and sealed keys


def test_any_t_members_release_one_sigma_and_a_forged_share_names_its_member(committee):
    key, members = committee
    g = b"G" * 32
    point = vrf_point(g, g, 7)
    parts = [make_partial(key, g, m.me, m.share, point) for m in members]
    sigmas = {combine(subset, key.threshold) for subset in itertools.combinations(parts, key.threshold)}
    assert len(sigmas) == 1                          # unique: whoever releases, the output is the same
    sigma = sigmas.pop()
    out = vrf_output(point, sigma)
    assert check_release(key, g, point, Release.of(parts[2:], 3).encode(), None, out) == sigma
    forged = replace(parts[1], value=parts[2].value)             # member 2 sends member 3's value
    with pytest.raises(RuleError, match="member 2's share"):
        check_partial(key, g, point, forged)
    with pytest.raises(RuleError, match="member 2"):
        check_release(key, g, point, Release((parts[0], forged, parts[3])).encode(), None, out)
    with pytest.raises(RuleError):                   # another round's point, another chain
        check_partial(key, g, vrf_point(g, g, 8), parts[0])
    with pytest.raises(RuleError):
        check_partial(key, b"H" * 32, point, parts[0])
    with pytest.raises(RuleError, match="threshold"):
        check_release(key, g, point, Release(tuple(parts[:2])).encode(), None, out)
    with pytest.raises(RuleError, match="another shard key"):
        check_release(key, g, point, Release.of(parts, 3).encode(), None, bytes(32))
    # t − 1 partials combined as if they were enough give another σ
    lam = lagrange_at_zero([1, 2])
    wrong = mul(lam[0], parts[0].value)
    assert wrong != sigma and vrf_output(point, wrong) != out


def test_a_key_sealed_to_the_committee_opens_only_with_its_release(committee):
    key, members = committee
    g = b"G" * 32
    shard_key = os.urandom(32)
    sealed = seal(key.group_key, shard_key)
    parts = [make_partial(key, g, m.me, m.share, sealed.point) for m in members[1:4]]
    sigma = check_release(key, g, sealed.point, Release.of(parts, 3).encode(), sealed, shard_key)
    assert unseal(key.group_key, sealed, sigma) == shard_key
    assert unseal(key.group_key, sealed, combine(parts[:2] + [parts[2]], 3)) == shard_key
    assert unseal(key.group_key, sealed, mul(2, sigma)) != shard_key
    material = seal_keys(key.group_key, [shard_key, os.urandom(32)])
    assert decode_seal_material(material, 2)[0].point != decode_seal_material(material, 2)[1].point
    with pytest.raises(RuleError) as exc:
        decode_seal_material(material, 3)
    assert exc.value.code == "bad-keyholder-material"
    assert Leak.decode(Leak(0, 5, parts[0]).encode()) == Leak(0, 5, parts[0])
    assert Partial.decode(parts[0].encode()) == parts[0] and pack([1]) != parts[0].encode()

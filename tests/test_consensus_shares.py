"""Shamir sharing of shard keys, share commitments, released-share checks (consensus.protocol.shares, PROTOCOL §3.14).

Attack first: a corrupted share (any field), a share for another shard / member / leaf, a truncated or padded
Merkle path, hostile bytes for every decoder; then the properties: any t shares reconstruct, any t − 1 are
distributed independently of the secret (exactly, by enumeration over a small prime, and statistically for the
sampler the dealer really uses)."""
from __future__ import annotations

import hashlib
import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.crypto import merkle_root
from chain.errors import DecodeError, RuleError
from consensus.protocol.shares import (
    KeyholderMaterial,
    KeyShare,
    P,
    check_share,
    combine,
    combine_key,
    combine_shares,
    deal,
    decode_material,
    evaluate,
    merkle_check,
    merkle_levels,
    merkle_path,
    random_element,
    split,
    split_key,
)


def counter_rng(seed: bytes):
    """A deterministic byte stream (sha256 in counter mode): reproducible dealings, no flaky statistics."""
    state = {"i": 0}

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + state["i"].to_bytes(8, "big")).digest()
            state["i"] += 1
        return out[:n]
    return rng


def test_p_is_the_least_prime_above_2_256():
    # Miller–Rabin with the first 40 prime bases (deterministic far beyond 2^256 for practical purposes; the
    # value is also sympy.nextprime(2**256)); and no prime between 2^256 and P
    def probable_prime(n: int) -> bool:
        d, s = n - 1, 0
        while d % 2 == 0:
            d, s = d // 2, s + 1
        for a in [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71]:
            x = pow(a, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(s - 1):
                x = x * x % n
                if x == n - 1:
                    break
            else:
                return False
        return True
    assert P == 2**256 + 297 and probable_prime(P)
    assert not any(probable_prime(2**256 + k) for k in range(1, 297, 2))


# ---------------------------------------------------------------- test vectors


def test_published_vector_wikipedia_p1613():
    # Wikipedia "Shamir's secret sharing", worked example: secret 1234, t = 3, f(x) = 1234 + 166x + 94x^2 mod 1613
    coeffs, p = [1234, 166, 94], 1613
    shares = [(x, evaluate(coeffs, x, p)) for x in range(1, 7)]
    assert shares == [(1, 1494), (2, 329), (3, 965), (4, 176), (5, 1188), (6, 775)]
    for subset in itertools.combinations(shares, 3):
        assert combine(list(subset), p) == 1234
    assert combine([(2, 1942), (4, 3402), (5, 4414)], 2**61 - 1) == 1234   # the same over the integers


def test_derived_vector_over_p():
    # a dealing from a fixed byte stream, checked against a direct evaluation (sum a_j x^j mod P)
    key = bytes(range(1, 33))
    ys = split_key(key, 3, 5, counter_rng(b"vector"))
    rng = counter_rng(b"vector")
    coeffs = [int.from_bytes(key, "big")] + [random_element(rng) for _ in range(2)]
    assert ys == [sum(c * x**j for j, c in enumerate(coeffs)) % P for x in range(1, 6)]
    assert ys[0].to_bytes(33, "big").hex() == FROZEN_Y1
    assert combine_key([(1, ys[0]), (3, ys[2]), (5, ys[4])]) == key


FROZEN_Y1 = "0014870e0d07215412cea09982699755fb910e07f3de7c4fd26417fb97b9632104"   # frozen: a change of the sampler or the encoding breaks it


def test_threshold_one_share_is_the_key():
    key = bytes(range(32))
    assert split_key(key, 1, 4, counter_rng(b"t1")) == [int.from_bytes(key, "big")] * 4


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), n=st.integers(1, 16), data=st.data())
def test_any_t_shares_reconstruct(key, n, data):
    t = data.draw(st.integers(1, n))
    ys = split_key(key, t, n, counter_rng(key + bytes([n, t])))
    members = data.draw(st.lists(st.integers(1, n), min_size=t, max_size=n, unique=True))
    assert combine_key([(x, ys[x - 1]) for x in members[:t]]) == key
    assert combine_key([(x, ys[x - 1]) for x in members]) == key      # more than t: the same polynomial


def test_t_minus_1_shares_reveal_nothing_exactly():
    # over GF(11), t = 3: for EVERY secret, the map (a1, a2) -> (f(2), f(5)) hits each pair exactly once, so
    # the two shares are uniform and independent of the secret (perfect secrecy of the same code)
    p, t = 11, 3
    for secret in range(p):
        seen = Counter((evaluate([secret, a1, a2], 2, p), evaluate([secret, a1, a2], 5, p))
                       for a1 in range(p) for a2 in range(p))
        assert len(seen) == p ** (t - 1) and set(seen.values()) == {1}


def test_t_minus_1_shares_reveal_nothing_statistically():
    # the dealer's real path (split + rejection sampler) over GF(7), t = 3, n = 4: the joint distribution of
    # members 1 and 3's shares for secret 0 and for secret 6 — chi-square homogeneity over the 49 cells,
    # df = 48, critical value 84.04 at 0.1 %; plus uniformity of each against 1/49 (fixed seeds: no flakes)
    p, draws = 7, 4900
    tables = []
    for secret in (0, 6):
        rng = counter_rng(b"stat" + bytes([secret]))
        cells = Counter()
        for _ in range(draws):
            ys = split(secret, 3, 4, rng, p)
            cells[(ys[0], ys[2])] += 1
        tables.append([cells[(a, b)] for a in range(p) for b in range(p)])
    expected = draws / p**2
    for table in tables:
        assert sum((o - expected) ** 2 / expected for o in table) < 84.04
    chi = sum((a - b) ** 2 / (a + b) for a, b in zip(*tables) if a + b)
    assert chi < 84.04


def test_one_share_over_p_is_independent_of_the_key():
    # the real field: with t = 2 one share y_1 = k + a_1 is uniform whatever k; its low 4 bits for k = 0 and
    # k = 2^256 − 1 are homogeneous (chi-square, df = 15, critical value 37.70 at 0.1 %) and each near-uniform
    tables = []
    for key in (bytes(32), b"\xff" * 32):
        rng = counter_rng(b"real-p" + key[:1])
        cells = Counter(split_key(key, 2, 3, rng)[0] % 16 for _ in range(3200))
        tables.append([cells[v] for v in range(16)])
    for table in tables:
        assert sum((o - 200) ** 2 / 200 for o in table) < 37.70
    assert sum((a - b) ** 2 / (a + b) for a, b in zip(*tables)) < 37.70


def test_random_element_is_unbiased():
    # p = 11 needs 4 bits: values 11..15 are rejected, not folded (a modulo would double 0..4)
    rng = counter_rng(b"sampler")
    counts = Counter(random_element(rng, 11) for _ in range(11_000))
    assert set(counts) == set(range(11))
    assert sum((c - 1000) ** 2 / 1000 for c in counts.values()) < 29.59   # df = 10, 0.1 %


# ---------------------------------------------------------------- Merkle paths


def test_merkle_paths_match_chain_crypto():
    for count in range(1, 34):
        leaves = [bytes([i]) * 32 for i in range(count)]
        levels = merkle_levels(leaves)
        root = merkle_root(leaves)
        assert levels[-1] == [root]
        for i in range(count):
            path = merkle_path(levels, i)
            assert merkle_check(leaves[i], i, count, path, root)
            assert not merkle_check(leaves[i], (i + 1) % count, count, path, root) or count == 1
            assert not merkle_check(leaves[i], i, count, path + (root,), root)        # padded
            if path:
                assert not merkle_check(leaves[i], i, count, path[:-1], root)        # truncated
        assert not merkle_check(leaves[0], count, count, (), root)                   # out of range


# ---------------------------------------------------------------- dealing and checking released shares


MEMBERS = tuple(sorted(hashlib.sha256(b"member%d" % i).digest() for i in range(3)))
KEYS = [hashlib.sha256(b"key%d" % i).digest() for i in range(5)]
SHARDS = [hashlib.sha256(b"shard%d" % i).digest() for i in range(5)]


@pytest.fixture(scope="module")
def dealing():
    return deal(KEYS, SHARDS, MEMBERS, 2, counter_rng(b"dealing"))


def test_dealing_checks_and_reconstructs(dealing):
    m = dealing.material
    assert (m.threshold, m.n_shards, len(m.roots)) == (2, 5, 3)
    assert KeyholderMaterial.decode(m.encode()) == m
    for batch in dealing.batches:
        batch.check(m, MEMBERS)
        assert batch.root == m.roots[batch.member - 1]
    for j, shard in enumerate(SHARDS):
        shares = [b.share(b.leaf_of(shard)) for b in dealing.batches]
        for s in shares:
            assert KeyShare.decode(s.encode()) == s
            check_share(s, m, MEMBERS, shard_commitment=shard, leaf=j)
        for pair in itertools.combinations(shares, 2):
            assert combine_shares(list(pair), 2) == KEYS[j]
        with pytest.raises(RuleError, match="threshold"):
            combine_shares(shares[:1], 2)


CORRUPTIONS = {
    "value": lambda s: s.__class__(s.member, s.shard_commitment, s.leaf, (s.value + 1) % P, s.salt, s.path),
    "salt": lambda s: s.__class__(s.member, s.shard_commitment, s.leaf, s.value, bytes(32), s.path),
    "member": lambda s: s.__class__(s.member % 3 + 1, s.shard_commitment, s.leaf, s.value, s.salt, s.path),
    "path": lambda s: s.__class__(s.member, s.shard_commitment, s.leaf, s.value, s.salt,
                                  (bytes(32),) + s.path[1:]),
    "short-path": lambda s: s.__class__(s.member, s.shard_commitment, s.leaf, s.value, s.salt, s.path[:-1]),
}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_corrupted_share_is_rejected(dealing, what):
    good = dealing.batches[1].share(2)
    bad = CORRUPTIONS[what](good)
    with pytest.raises(RuleError) as err:
        check_share(KeyShare.decode(bad.encode()), dealing.material, MEMBERS, shard_commitment=SHARDS[2], leaf=2)
    assert err.value.code == "bad-key-share"


def test_share_for_another_shard_or_leaf_is_rejected(dealing):
    good = dealing.batches[0].share(1)
    for shard, leaf in ((SHARDS[2], 1), (SHARDS[1], 2)):
        with pytest.raises(RuleError) as err:
            check_share(good, dealing.material, MEMBERS, shard_commitment=shard, leaf=leaf)
        assert err.value.code == "bad-key-share"
    # a share replayed under another committee's material (another dealing of the same keys)
    other = deal(KEYS, SHARDS, MEMBERS, 2, counter_rng(b"other"))
    with pytest.raises(RuleError, match="bad-key-share"):
        check_share(good, other.material, MEMBERS, shard_commitment=SHARDS[1], leaf=1)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_decoders_raise_only_decode_error(data):
    for decode in (KeyShare.decode, KeyholderMaterial.decode):
        try:
            decode(data)
        except DecodeError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 7))
def test_flipped_share_byte_never_passes(offset, bit):
    # any single bit flipped in an encoded share: it either fails to decode or fails the check
    d = deal(KEYS[:3], SHARDS[:3], MEMBERS, 2, counter_rng(b"flip"))
    raw = bytearray(d.batches[2].share(1).encode())
    raw[offset % len(raw)] ^= 1 << bit
    try:
        share = KeyShare.decode(bytes(raw))
    except DecodeError:
        return
    with pytest.raises(RuleError, match="bad-key-share"):
        check_share(share, d.material, MEMBERS, shard_commitment=SHARDS[1], leaf=1)


def test_material_must_fit_committee_and_batch(dealing):
    raw = dealing.material.encode()
    assert decode_material(raw, MEMBERS, 2, 5) == dealing.material
    for keyholders, t, n in ((MEMBERS[:2], 2, 5), (MEMBERS, 3, 5), (MEMBERS, 2, 4)):
        with pytest.raises(RuleError) as err:
            decode_material(raw, keyholders, t, n)
        assert err.value.code == "bad-keyholder-material"
    with pytest.raises(RuleError, match="bad-keyholder-material"):
        decode_material(raw[:-1], MEMBERS, 2, 5)


def test_deal_refuses_bad_committees():
    for members, t in ((MEMBERS, 0), (MEMBERS, 4), (MEMBERS[::-1], 2), (MEMBERS + MEMBERS[:1], 2)):
        with pytest.raises(ValueError):
            deal(KEYS, SHARDS, members, t, counter_rng(b"x"))
    with pytest.raises(ValueError):
        deal(KEYS, SHARDS[:4], MEMBERS, 2, counter_rng(b"x"))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 7), count=st.integers(1, 9), seed=st.binary(max_size=8), data=st.data())
def test_dealt_shares_check_and_any_t_reconstruct(n, count, seed, data):
    t = data.draw(st.integers(1, n))
    members = tuple(sorted(hashlib.sha256(seed + b"m%d" % i).digest() for i in range(n)))
    keys = [hashlib.sha256(seed + b"k%d" % j).digest() for j in range(count)]
    shards = [hashlib.sha256(seed + b"s%d" % j).digest() for j in range(count)]
    d = deal(keys, shards, members, t, counter_rng(seed))
    assert deal(keys, shards, members, t, counter_rng(seed)).material.encode() == d.material.encode()  # deterministic
    j = data.draw(st.integers(0, count - 1))
    subset = data.draw(st.lists(st.integers(1, n), min_size=t, max_size=t, unique=True))
    shares = [KeyShare.decode(d.batches[i - 1].share(j).encode()) for i in subset]
    for s in shares:
        check_share(s, d.material, members, shard_commitment=shards[j], leaf=j)
    assert combine_shares(shares, t) == keys[j]
    if t > 1:
        with pytest.raises(RuleError, match="bad-key-share"):
            combine_shares(shares[:-1], t)

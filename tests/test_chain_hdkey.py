"""Recovery phrases are portable: the official SLIP-0010 ed25519 test vectors (both seeds, every path: chain
code, private key, public key), the BIP-39 reference vectors with the passphrase "TREZOR", and the phrase →
key derivation with a passphrase and a path, against what any SLIP-0010 wallet computes."""
from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from chain.errors import WalletError
from chain.hdkey import DEFAULT_PATH, derive, format_path, parse_path
from chain.wallet import Wallet, bip39_seed, seed_from_phrase

H = "'"
# https://github.com/satoshilabs/slips/blob/master/slip-0010.md, "Test vector 1 for ed25519" and "2"
# (path, chain code, private key, public key with SLIP-0010's 0x00 prefix)
VECTOR_1 = ("000102030405060708090a0b0c0d0e0f", [
    ("m", "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb",
     "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
     "00a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed"),
    ("m/0H", "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69",
     "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
     "008c8a13df77a28f3445213a0f432fde644acaa215fc72dcdf300d5efaa85d350c"),
    ("m/0H/1H", "a320425f77d1b5c2505a6b1b27382b37368ee640e3557c315416801243552f14",
     "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2",
     "001932a5270f335bed617d5b935c80aedb1a35bd9fc1e31acafd5372c30f5c1187"),
    ("m/0H/1H/2H", "2e69929e00b5ab250f49c3fb1c12f252de4fed2c1db88387094a0f8c4c9ccd6c",
     "92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9",
     "00ae98736566d30ed0e9d2f4486a64bc95740d89c7db33f52121f8ea8f76ff0fc1"),
    ("m/0H/1H/2H/2H", "8f6d87f93d750e0efccda017d662a1b31a266e4a6f5993b15f5c1f07f74dd5cc",
     "30d1dc7e5fc04c31219ab25a27ae00b50f6fd66622f6e9c913253d6511d1e662",
     "008abae2d66361c879b900d204ad2cc4984fa2aa344dd7ddc46007329ac76c429c"),
    ("m/0H/1H/2H/2H/1000000000H", "68789923a0cac2cd5a29172a475fe9e0fb14cd6adb5ad98a3fa70333e7afa230",
     "8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793",
     "003c24da049451555d51a7014a37337aa4e12d41e485abccfa46b47dfb2af54b7a"),
])
VECTOR_2 = (("fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c69666"
            "3605d5a5754514e4b484542"), [
    ("m", "ef70a74db9c3a5af931b5fe73ed8e1a53464133654fd55e7a66f8570b8e33c3b",
     "171cb88b1b3c1db25add599712e36245d75bc65a1a5c9e18d76f9f2b1eab4012",
     "008fe9693f8fa62a4305a140b9764c5ee01e455963744fe18204b4fb948249308a"),
    ("m/0H", "0b78a3226f915c082bf118f83618a618ab6dec793752624cbeb622acb562862d",
     "1559eb2bbec5790b0c65d8693e4d0875b1747f4970ae8b650486ed7470845635",
     "0086fab68dcb57aa196c77c5f264f215a112c22a912c10d123b0d03c3c28ef1037"),
    ("m/0H/2147483647H", "138f0b2551bcafeca6ff2aa88ba8ed0ed8de070841f0c4ef0165df8181eaad7f",
     "ea4f5bfe8694d8bb74b7b59404632fd5968b774ed545e810de9c32a4fb4192f4",
     "005ba3b9ac6e90e83effcd25ac4e58a1365a9e35a3d3ae5eb07b9e4d90bcf7506d"),
    ("m/0H/2147483647H/1H", "73bd9fff1cfbde33a1b846c27085f711c0fe2d66fd32e139d3ebc28e5a4a6b90",
     "3757c7577170179c7868353ada796c839135b3d30554bbb74a4b1e4a5a58505c",
     "002e66aa57069c86cc18249aecf5cb5a9cebbfd6fadeab056254763874a9352b45"),
    ("m/0H/2147483647H/1H/2147483646H", "0902fe8a29f9140480a00ef244bd183e8a13288e4412d8389d140aac1794825a",
     "5837736c89570de861ebc173b1086da4f505d4adb387c6a1b1342d5e4ac9ec72",
     "00e33c0f7d81d843c572275f287498e8d408654fdf0d1e065b84e2e6f157aab09b"),
    ("m/0H/2147483647H/1H/2147483646H/2H", "5d70af781f3a37b829f0d060924d5e960bdc02e85423494afc0b1a41bbe196d4",
     "551d333177df541ad876a60ea71f00447931c0a9da16f227c11ea080d7391b8d",
     "0047150c75db263559a70d5778bf36abbab30fb061ad69f69ece61a72b0cfa4fc0"),
])


@pytest.mark.parametrize("seed,path,chain_code,private,public",
                         [(v[0], *row) for v in (VECTOR_1, VECTOR_2) for row in v[1]])
def test_slip10_ed25519_vectors(seed: str, path: str, chain_code: str, private: str, public: str) -> None:
    key, code = derive(bytes.fromhex(seed), path)
    assert (key.hex(), code.hex()) == (private, chain_code)
    assert "00" + SigningKey(key).verify_key.encode().hex() == public     # the key pair a wallet shows


# BIP-39 reference vectors (trezor/python-mnemonic vectors.json, passphrase "TREZOR"): phrase -> 64-byte seed
TREZOR = [
    (" ".join(["abandon"] * 11 + ["about"]),
     ("c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c8"
     "1b2f001698e7463b04")),
    ("legal winner thank year wave sausage worth useful legal winner thank yellow",
     ("2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee626"
     "0e8d9739fce1f607")),
    ("letter advice cage absurd amount doctor acoustic avoid letter advice cage above",
     ("d71de856f81a8acc65e6fc851a38d4d7ec216fd0796d0a6827a3ad6ed5511a30fa280f12eb2e47ed2ac03b5c462a0358d18d69fe4f985ec8"
     "1778c1b370b652a8")),
    ("zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
     ("ac27495480225222079d7be181583751e86f571027b0497b5b5d11218e0a8a13332572917f0f8e5a589620c6f15b11c61dee327651a14c34"
     "e18231052e48c069")),
    (" ".join(["abandon"] * 23 + ["art"]),
     ("bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2"
     "a5e608d68f92fcc8")),
]


@pytest.mark.parametrize("phrase,seed", TREZOR)
def test_bip39_vectors_with_a_passphrase(phrase: str, seed: str) -> None:
    assert bip39_seed(phrase, "TREZOR").hex() == seed
    # the key is the SLIP-0010 key of exactly that seed, at the path asked for
    assert seed_from_phrase(phrase, "TREZOR") == derive(bytes.fromhex(seed), "m")[0]
    assert seed_from_phrase(phrase, "TREZOR", "m/44'/0'") == derive(bytes.fromhex(seed), "m/44H/0H")[0]
    assert seed_from_phrase(phrase, "TREZOR") != seed_from_phrase(phrase)        # the passphrase matters


def test_paths_parse_and_refuse() -> None:
    assert DEFAULT_PATH == "m" and parse_path("m") == ()
    assert format_path(parse_path("m/44h/9444H/0'")) == "m/44'/9444'/0'"
    for bad, frag in (("44'/0'", "start with 'm'"), ("m/44'/0", "not hardened"), ("m/x'", "not an index"),
                      ("m/2147483648'", "not an index"), ("m" + "/1'" * 40, "deeper")):
        with pytest.raises(WalletError, match=frag):
            parse_path(bad)


def test_a_wallet_restores_a_key_made_with_passphrase_and_path(tmp_path) -> None:
    a = Wallet.create(tmp_path / "a", "pw", opslimit=1, memlimit=8 * 2**20)
    key, phrase = a.new_key_with_phrase("k", passphrase="extra words", path="m/44'/9444'/0'")
    b = Wallet.create(tmp_path / "b", "pw", opslimit=1, memlimit=8 * 2**20)
    assert b.import_phrase(phrase, "same", passphrase="extra words", path="m/44H/9444H/0H").address == key.address
    assert b.import_phrase(phrase, "nopass", path="m/44'/9444'/0'").address != key.address
    assert b.import_phrase(phrase, "nopath", passphrase="extra words").address != key.address

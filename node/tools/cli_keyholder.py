"""``popchain keyholder new | dkg-board | dkg``: a keyholder committee's ceremony, over node.tools.dkg_board and
node.tools.dkg_client (PROTOCOL §3.14).

The flow: each keyholder makes its key on its own machine (``keyholder new``) and sends its public key to the
others; anyone runs a board (``keyholder dkg-board``, untrusted) with that list and the threshold; every
keyholder runs ``keyholder dkg`` against the board with the same list, and ends with its member file (its
share, never a shard key) and the public committee key, which the genesis creator puts into genesis
(``genesis create --committee committee.key``).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from node.tools.cli_common import CliError, Commands, emit


def _pubkeys(text: str) -> list[bytes]:
    """Keyholder public keys: a comma-separated list of 64-hex keys, or @FILE with one per line."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise CliError(f"cannot read {text[1:]}: {exc.strerror}") from None
    keys = []
    items = [item for line in text.splitlines() for item in line.split("#", 1)[0].split(",")]
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            key = bytes.fromhex(item)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise CliError(f"--keyholders: {item[:70]!r} is not a 64-hex public key")
        keys.append(key)
    if len(set(keys)) != len(keys) or not keys:
        raise CliError("--keyholders: give each keyholder's public key once")
    return keys


def _threshold(args: argparse.Namespace, n: int) -> int:
    t = args.threshold if args.threshold is not None else n // 2 + 1
    if not (n / 2 < t <= n):
        raise CliError(f"--threshold {t}: a committee of {n} needs a majority (more than {n // 2}, at most {n})")
    return t


def cmd_keyholder_new(args: argparse.Namespace) -> None:
    from chain.crypto import Keypair
    from consensus.keyholder import key_file, write_secret
    kp = Keypair.generate()
    path = Path(args.out)
    try:
        write_secret(path, key_file(kp))
    except FileExistsError:
        raise CliError(f"{path} already exists: refusing to overwrite a keyholder key") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    emit(args, {"pubkey": kp.public.hex(), "key_file": str(path)},
         [f"public key  {kp.public.hex()}    -> send to the other keyholders and the genesis creator",
          f"key file    {path}  -> yours alone (secret; mode 0600): 'popchain keyholder dkg --key {path} …'"])


def cmd_keyholder_pubkey(args: argparse.Namespace) -> None:
    from chain.errors import PopError
    from consensus.keyholder import load_key_file
    try:
        kp = load_key_file(Path(args.key).read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read key file {args.key}: {exc.strerror}") from None
    except PopError as exc:
        raise CliError(f"{args.key}: {exc}") from None
    emit(args, {"pubkey": kp.public.hex()}, kp.public.hex())


def cmd_keyholder_dkg_board(args: argparse.Namespace) -> None:
    from node.tools.dkg_board import new_session, serve_board
    keys = _pubkeys(args.keyholders)
    session = new_session(keys, _threshold(args, len(keys)), args.label)
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        raise CliError(f"--listen {args.listen!r}: expected HOST:PORT")

    def ready(url: str) -> None:
        emit(args, {"url": url, "session": session.id.hex(), "keyholders": len(keys), "threshold": session.threshold},
             [f"board          {url}    -> every keyholder: popchain keyholder dkg --board {url} …",
              f"session        {session.id.hex()} ({session.threshold}-of-{session.n}, label {session.label!r})"])
        sys.stdout.flush()
    try:
        asyncio.run(serve_board(session, host or "127.0.0.1", int(port), linger_s=args.linger, ready=ready))
    except OSError as exc:
        raise CliError(f"cannot listen on {args.listen}: {exc.strerror}") from None
    except KeyboardInterrupt:
        return


def cmd_keyholder_dkg(args: argparse.Namespace) -> None:
    from chain.errors import PopError
    from consensus.keyholder import load_key_file
    from node.tools.dkg_client import run_ceremony
    try:
        keypair = load_key_file(Path(args.key).read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read key file {args.key}: {exc.strerror}") from None
    keys = _pubkeys(args.keyholders)
    if keypair.public not in keys:
        raise CliError(f"your key {keypair.public.hex()[:16]}… is not in --keyholders")

    def progress(message: str) -> None:
        if not args.json:
            print(f"dkg: {message}", file=sys.stderr)
    try:
        res = asyncio.run(run_ceremony(args.board, keypair, keyholders=keys, threshold=_threshold(args, len(keys)),
                                       label=args.label, out=Path(args.out), timeout_s=args.timeout,
                                       progress=progress))
    except (PopError, OSError) as exc:
        raise CliError(f"dkg: {exc}") from None
    except Exception as exc:          # aiohttp's connection errors: one line, not a traceback
        if type(exc).__module__.startswith("aiohttp"):
            raise CliError(f"dkg: cannot reach the board {args.board}: {exc}") from None
        raise
    key = res.key
    emit(args, {"member": res.member, "n": key.n, "threshold": key.threshold, "group_key": key.group_key.hex(),
                "committee_key": key.hash.hex(), "qualified": list(key.qual), "seconds": round(res.seconds, 3),
                "member_file": str(res.member_file), "committee_file": str(res.committee_file),
                "transcript_file": str(res.transcript_file)},
         [(f"keyholder      {res.member} of {key.n}, threshold {key.threshold} (dealers qualified: "
          f"{', '.join(map(str, key.qual))})"),
          f"group key      {key.group_key.hex()}  (nobody holds its secret: t keyholders release shares)",
          f"member file    {res.member_file}  -> yours alone: popchain node run --keyholder {res.member_file}",
          (f"committee key  {res.committee_file}  -> public: popchain genesis create --committee "
          f"{res.committee_file} …"),
          f"transcript     {res.transcript_file}  -> public: every message of the ceremony",
          f"took           {res.seconds:.2f} s"])


def register(cmds: Commands) -> None:
    g = cmds.group("keyholder", "a keyholder committee: keys and the distributed key generation")
    p = g.leaf("new", "make this keyholder's signing key (before the ceremony)", cmd_keyholder_new)
    p.add_argument("--out", required=True, help="the key file to write (mode 0600)")
    p = g.leaf("pubkey", "print the public key of a key file (or member file): what the others need",
               cmd_keyholder_pubkey)
    p.add_argument("--key", required=True, help="a key file or a member file")
    agreed = "the keyholders' public keys: HEX,HEX,… or @FILE (one per line), as agreed out of band"
    p = g.leaf("dkg-board", "relay a key-generation ceremony between the keyholders (learns nothing secret)",
               cmd_keyholder_dkg_board)
    p.add_argument("--keyholders", required=True, help=agreed)
    p.add_argument("--threshold", type=int, help="keyholders needed to reveal a shard (default: a majority)")
    p.add_argument("--label", default="popchain", help="a name for the ceremony (default popchain)")
    p.add_argument("--listen", default="127.0.0.1:9450", help="HOST:PORT to serve on (default 127.0.0.1:9450)")
    p.add_argument("--linger", type=float, default=30.0,
                   help="seconds to keep serving once every keyholder signed (default 30)")
    p = g.leaf("dkg", "take part in the key generation: writes your member file and the committee key",
               cmd_keyholder_dkg)
    p.add_argument("--key", required=True, help="your key file ('popchain keyholder new')")
    p.add_argument("--board", required=True, help="the ceremony board's URL")
    p.add_argument("--keyholders", required=True, help=agreed)
    p.add_argument("--threshold", type=int, help="as agreed (default: a majority)")
    p.add_argument("--label", default="popchain", help="as the board's (default popchain)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the others (default 300)")
    p.add_argument("--out", required=True, help="directory for keyholder.secret, committee.key, dkg-transcript.bin")

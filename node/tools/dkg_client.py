"""One keyholder's run of the distributed key generation over a ceremony board (``popchain keyholder dkg``,
PROTOCOL §3.14): fetch the session and check it against what the keyholder was told (the member keys and the
threshold), then JOIN, DEAL, COMPLAIN and SIGN, each once every member's message of the previous phase is on
the board, and write the results — the member file (this keyholder's share, mode 0600), the public committee
key (what ``genesis create --committee`` takes) and the transcript (anyone can re-check the qualification
rule with it).

What it does NOT do: trust the board (every message is checked; a board that withholds makes the ceremony time
out, one that shows members different transcripts makes it fail at SIGN), or keep the polynomial after a crash
(a failed ceremony is simply run again: a new session).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from chain.crypto import Keypair
from chain.encoding import check_bytes, check_list, pack, unpack
from chain.errors import DecodeError, PopError
from consensus.keyholder import DkgError, DkgMember, member_file, write_secret
from consensus.protocol.dkg import COMPLAIN, DEAL, JOIN, SIGN, CommitteeKey, DkgMsg, Session, Transcript

__all__ = ["DkgResult", "run_ceremony"]

POLL_S = 0.05


@dataclass(frozen=True)
class DkgResult:
    key: CommitteeKey
    member: int
    member_file: Path
    committee_file: Path
    transcript_file: Path
    seconds: float                  # join → signed committee key


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as resp:
        data: dict[str, Any] = await resp.json()
        if resp.status != 200:
            raise DkgError(f"board {url}: {data.get('error', {}).get('message', resp.status)}")
        return data


async def _post(session: aiohttp.ClientSession, board: str, msg: DkgMsg) -> None:
    async with session.post(f"{board}/dkg/messages", json={"msg": msg.encode().hex()}) as resp:
        data = await resp.json()
        if resp.status != 200:
            raise DkgError(f"the board refused this keyholder's message: {data.get('error', {}).get('message')}")


async def _wait_phase(session: aiohttp.ClientSession, board: str, transcript: Transcript, phase: int,
                      deadline: float, progress: Callable[[str], None]) -> None:
    n = transcript.session.n
    while True:
        data = await _get_json(session, f"{board}/dkg/messages?phase={phase}")
        for raw in data.get("messages", []):
            try:
                transcript.add(DkgMsg.decode(bytes.fromhex(raw)))
            except (DecodeError, ValueError):
                continue         # the board is not trusted: a message that does not check is ignored
        have = transcript.have(phase)
        if len(have) == n:
            return
        if time.monotonic() > deadline:
            missing = [i for i in range(1, n + 1) if i not in have]
            keys = [transcript.session.keyholders[i - 1].hex()[:16] for i in missing]
            raise DkgError(f"phase {phase}: keyholders {missing} ({', '.join(keys)}) did not post in time; "
                           f"run the ceremony again (a new session) once they are ready")
        await asyncio.sleep(POLL_S)


async def run_ceremony(board: str, keypair: Keypair, *, keyholders: list[bytes], threshold: int, label: str,
                       out: Path, timeout_s: float = 300.0,
                       progress: Callable[[str], None] = lambda _m: None) -> DkgResult:
    """Run this keyholder's side of the ceremony on ``board`` (its URL) and write its three files into ``out``
    (refusing to overwrite). ``keyholders`` and ``threshold`` are what the keyholders agreed out of band: a
    session that differs is refused (the board cannot add members or lower the threshold)."""
    board = board.rstrip("/")
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "keyholder.secret", out / "committee.key", out / "dkg-transcript.bin")
    for p in paths:
        if p.exists():
            raise DkgError(f"{p} already exists: refusing to overwrite a keyholder's files")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        deadline = time.monotonic() + timeout_s
        while True:           # the board may still be starting: wait for it as for the other keyholders
            try:
                data = await _get_json(http, f"{board}/dkg/session")
                break
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        try:
            session = Session.decode(bytes.fromhex(data["session"]))
        except (DecodeError, ValueError, KeyError) as exc:
            raise DkgError(f"the board's session does not decode: {exc}") from None
        if list(session.keyholders) != sorted(set(keyholders)) or session.threshold != threshold:
            raise DkgError(f"the board's session is a {session.threshold}-of-{session.n} committee of other keys "
                           f"than the {threshold}-of-{len(set(keyholders))} you were told: refusing to join")
        if session.label != label:
            raise DkgError(f"the board's session is labelled {session.label!r}, expected {label!r}")
        member = DkgMember(session, keypair)
        transcript = Transcript(session)
        started = time.monotonic()
        progress(f"joined session {session.id.hex()[:16]} as keyholder {member.me} of {session.n} "
                 f"(threshold {session.threshold})")
        await _post(http, board, member.join())
        await _wait_phase(http, board, transcript, JOIN, deadline, progress)
        await _post(http, board, member.deal(transcript))
        await _wait_phase(http, board, transcript, DEAL, deadline, progress)
        progress("every keyholder dealt; checking the shares dealt to this keyholder")
        await _post(http, board, member.complain(transcript))
        await _wait_phase(http, board, transcript, COMPLAIN, deadline, progress)
        sign_msg, key = member.sign(transcript)
        await _post(http, board, sign_msg)
        signs = Transcript(session)
        await _wait_phase(http, board, signs, SIGN, deadline, progress)
        sigs: dict[bytes, bytes] = {}
        for i in signs.have(SIGN):
            try:
                sigs[session.keyholders[i - 1]] = check_bytes(
                    check_list(unpack(signs.msgs[(SIGN, i)].body, max_size=128), 1, "sign")[0], 64, "signature")
            except DecodeError as exc:
                raise DkgError(f"keyholder {i}'s signature message does not decode: {exc}") from None
        try:
            signed = member.finish(key, sigs)
        except PopError as exc:
            raise DkgError(f"the keyholders did not sign one committee key ({exc}): the board may have shown "
                           f"them different messages; run the ceremony again") from None
        seconds = time.monotonic() - started
    assert member.share is not None and member.outcome is not None
    if member.outcome.disqualified:
        progress(f"disqualified dealers: {member.outcome.disqualified}")
    write_secret(paths[0], member_file(signed, member.me, keypair, member.share))
    paths[1].write_bytes(signed.encode())
    paths[2].write_bytes(pack([session.encode(), [transcript.msgs[k].encode() for k in sorted(transcript.msgs)]]))
    return DkgResult(signed, member.me, *paths, seconds)

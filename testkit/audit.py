"""For the audit ledger's tests: events and ledger entries to record, history changed behind the
service's back, the `ocsea` command line, and independent checks of what the ledger publishes
(a checkpoint note by the C2SP specifications, a Merkle root by RFC 6962), written here from the
specifications rather than taken from the service."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.testing import CliRunner

from contracts.events import Actor, ActorKind, CaseAccessData, Envelope, EventType, make_event
from ocsea.cli import app as ocsea_cli
from ocsea.runtime.consumer import Origin
from services.audit.adapters.ledger import Ledger
from services.audit.domain.entry import NewEntry, event_entry
from testkit.triage_events import received


def event(
    case_id: uuid.UUID,
    *,
    actor: Actor | None = None,
    event_type: EventType = EventType.REPORT_RECEIVED,
    at: datetime | None = None,
) -> Envelope:
    """An event of the case to record (a received report's data, whatever its type)."""
    return make_event(
        event_type=event_type,
        case_id=case_id,
        producer="intake",
        actor=actor or Actor(kind=ActorKind.PARTNER, id="partner-hotline"),
        data=received(),
        occurred_at=at,
    )


def entry(envelope: Envelope, offset: int = 0) -> NewEntry:
    """The ledger entry of an event read at `offset` of a topic."""
    body = envelope.model_dump_json().encode()
    return event_entry(envelope, Origin("t", 0, offset, hashlib.sha256(body).hexdigest()))


def access_event(viewer: str, case_id: uuid.UUID, event_id: uuid.UUID | None = None) -> Envelope:
    """An officer's read of a case, as routing records it."""
    return make_event(
        event_type=EventType.CASE_VIEWED,
        event_id=event_id,
        case_id=case_id,
        producer="routing",
        actor=Actor(kind=ActorKind.OFFICER, id=viewer, agency="erbil-cpu"),
        data=CaseAccessData(viewer=viewer, role="officer", agency="erbil-cpu", reason="open task"),
    )


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH of RFC 6962 section 2.1, written out here rather than taken from the service."""
    if not leaves:
        return hashlib.sha256().digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below n
    left, right = rfc6962_root(leaves[:split]), rfc6962_root(leaves[split:])
    return hashlib.sha256(b"\x01" + left + right).digest()


Tamper = Callable[[AsyncConnection], Awaitable[None]]


async def tamper(url: str, change: Tamper) -> None:
    """As the tables' owner: switch the append-only protection off, change history, switch it
    back on (the service itself never could: it only appends)."""
    ledger = Ledger(url)
    async with ledger.engine.begin() as conn:
        if ledger.engine.dialect.name == "postgresql":
            await conn.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
            await change(conn)
            await conn.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
        else:
            for trigger in ("audit_entries_no_update", "audit_entries_no_delete"):
                await conn.execute(text(f"DROP TRIGGER {trigger}"))
            await change(conn)
    await ledger.close()
    await Ledger(url).create()  # restores the SQLite triggers, as a restart would


def cli(*args: str) -> tuple[int, str]:
    """`ocsea *args` in this process: its exit code and output."""
    result = CliRunner().invoke(ocsea_cli, list(args))
    return result.exit_code, result.output


def spec_open(note: str, verifier: str) -> tuple[str, int, bytes]:
    """A checkpoint note checked as the specifications say, independently of the service code:
    (origin, tree size, root hash) if `verifier` signed it, else AssertionError."""
    name, key_hash_hex, typed_b64 = verifier.split("+", 2)
    typed = base64.b64decode(typed_b64)
    assert typed[0] == 0x01, "an Ed25519 verifier key"
    assert len(typed) == 33
    key_hash = hashlib.sha256(name.encode() + b"\n" + typed).digest()[:4]
    assert key_hash.hex() == key_hash_hex
    split = note.rindex("\n\n")
    body, signatures = note[: split + 1], note[split + 2 :]
    assert signatures.endswith("\n")
    verified = False
    for line in signatures[:-1].split("\n"):
        dash, signer, blob = line.split(" ")
        assert dash == "\u2014"
        decoded = base64.b64decode(blob)
        if signer != name or decoded[:4] != key_hash:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(typed[1:]).verify(decoded[4:], body.encode())
        except InvalidSignature as exc:
            raise AssertionError("the signature does not verify") from exc
        verified = True
    assert verified, f"no signature by {name}"
    origin, size, root, rest = body.split("\n", 3)
    assert rest == "", "no extension lines"
    assert size.isdigit()
    assert size == "0" or not size.startswith("0")
    return origin, int(size), base64.b64decode(root)

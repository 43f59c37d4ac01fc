"""Checkpoints as C2SP `tlog-checkpoint` signed notes, which standard transparency-log tools read.

The ledger's tree is an RFC 9162 (RFC 6962) Merkle tree, so its head can also be written in
the format transparency-log verifiers and witnesses check (https://c2sp.org/tlog-checkpoint,
signed as https://c2sp.org/signed-note)::

    <origin>
    <tree size, decimal>
    <root hash, base64>

    — <key name> <base64(4-byte key hash || Ed25519 signature)>

The signature covers the text up to and including the root hash's newline. The key is the
ledger's own Ed25519 checkpoint key, named by the origin; its key hash is the first four bytes
of SHA-256(name || 0x0A || 0x01 || public key), and verifiers are configured with the verifier
key ``<name>+<key hash, hex>+<base64(0x01 || public key)>``. The note carries no timestamp
(the JSON checkpoint does); Ed25519 signatures are deterministic, so one tree head always makes
the same note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.audit.domain.checkpoint import raw_public_key

ED25519 = 0x01
"""The signed-note signature type of Ed25519."""
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
_KEY_NAME = re.compile(r"^[^\s+]+$")
_SIGNATURE_LINE = re.compile(r"^\u2014 (?P<name>[^\s+]+) (?P<signature>[A-Za-z0-9+/=]+)$")


class NoteError(ValueError):
    """A signed note is malformed, or not signed by the expected key."""


@dataclass(frozen=True)
class TlogCheckpoint:
    origin: str
    tree_size: int
    root: bytes


def _check_name(name: str) -> None:
    if not _KEY_NAME.fullmatch(name):
        raise NoteError(f"a key name must be non-empty, without spaces or '+': {name!r}")


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte hash that names an Ed25519 key in a signature line."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """The verifier key string transparency-log tools are configured with."""
    _check_name(name)
    encoded = base64.b64encode(bytes([ED25519]) + public_key).decode()
    return f"{name}+{key_hash(name, public_key).hex()}+{encoded}"


def checkpoint_body(origin: str, tree_size: int, root: bytes) -> str:
    """The checkpoint's text: what the signature covers."""
    return f"{origin}\n{tree_size}\n{base64.b64encode(root).decode()}\n"


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """`text` (ending in a newline) followed by a blank line and one signature line."""
    _check_name(name)
    if not text.endswith("\n"):
        raise NoteError("a note's text ends with a newline")
    signature = private_key.sign(text.encode())
    stamp = base64.b64encode(key_hash(name, raw_public_key(private_key)) + signature).decode()
    return f"{text}\n{SIGNATURE_PREFIX}{name} {stamp}\n"


def tlog_checkpoint(
    private_key: Ed25519PrivateKey, *, origin: str, tree_size: int, root: bytes
) -> str:
    """The tree head as a signed `tlog-checkpoint` note, its key named by the origin."""
    return sign_note(checkpoint_body(origin, tree_size, root), origin, private_key)


def parse_verifier_key(key: str) -> tuple[str, bytes, bytes]:
    """(name, key hash, raw Ed25519 public key) of a verifier key string."""
    parts = key.strip().split("+", 2)  # the base64 key may hold a '+' itself
    if len(parts) != 3:
        raise NoteError("a verifier key is <name>+<key hash>+<key>")
    name, hash_hex, encoded = parts
    _check_name(name)
    try:
        expected_hash = bytes.fromhex(hash_hex)
        typed = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise NoteError("the verifier key's hash or key is not well encoded") from exc
    if len(typed) != 33 or typed[0] != ED25519:
        raise NoteError("the verifier key is not an Ed25519 key")
    public_key = typed[1:]
    if len(expected_hash) != 4 or expected_hash != key_hash(name, public_key):
        raise NoteError("the verifier key's hash does not match its name and key")
    return name, expected_hash, public_key


def open_checkpoint(note: str, verifier: str) -> TlogCheckpoint:
    """Check a `tlog-checkpoint` note's signature by the verifier key's owner, and parse it."""
    name, expected_hash, public_key = parse_verifier_key(verifier)
    # Signature lines are never empty, so the text ends at the note's last blank line.
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise NoteError("a signed note is its text, a blank line and signature lines")
    text += "\n"
    verified = False
    for line in signatures[:-1].split("\n"):
        match = _SIGNATURE_LINE.fullmatch(line)
        if match is None:
            raise NoteError("a signature line is '\u2014 <name> <base64>'")
        try:
            stamp = base64.b64decode(match["signature"], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise NoteError("a signature is not base64") from exc
        if match["name"] != name or stamp[:4] != expected_hash:
            continue  # another party's signature (a witness's cosignature): not ours to check
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(stamp[4:], text.encode())
        except InvalidSignature as exc:
            raise NoteError(f"the signature of {name} does not verify") from exc
        verified = True
    if not verified:
        raise NoteError(f"the note carries no signature of {name}")
    lines = text.split("\n")
    if len(lines) < 4:
        raise NoteError("a checkpoint has an origin, a tree size and a root hash")
    origin, size, root_b64 = lines[0], lines[1], lines[2]
    if not size.isascii() or not size.isdigit() or (size != "0" and size.startswith("0")):
        raise NoteError(f"the tree size {size!r} is not a decimal number")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise NoteError("the root hash is not base64") from exc
    if len(root) != 32:
        raise NoteError("the root hash is not 32 bytes")
    return TlogCheckpoint(origin, int(size), root)

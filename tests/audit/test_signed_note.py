"""Checkpoints as C2SP `tlog-checkpoint` signed notes, checked two ways: against the published
example of the Go reference implementation (golang.org/x/mod/sumdb/note), and by a verifier
written here from the specifications (https://c2sp.org/signed-note,
https://c2sp.org/tlog-checkpoint) with nothing but hashlib, base64 and `cryptography`.

(No maintained Python library for signed notes fits: the one on PyPI that reads C2SP
checkpoints needs Python 3.12, this project runs on 3.11.)
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.domain.checkpoint import raw_public_key
from services.audit.domain.signed_note import (
    NoteError,
    checkpoint_body,
    open_checkpoint,
    parse_verifier_key,
    sign_note,
    tlog_checkpoint,
    verifier_key,
)
from testkit.audit import spec_open

# The example in the documentation of golang.org/x/mod/sumdb/note: a signer key, its verifier
# key, and the note it signs. Ed25519 is deterministic, so signing the text again must give
# these very bytes.
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ORIGIN = "ocsea.example/audit"
ROOT = hashlib.sha256(b"root").digest()


def go_signer_key() -> Ed25519PrivateKey:
    # PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>; the base64 may hold a '+' itself.
    typed = base64.b64decode(GO_SIGNER.split("+", 4)[4])
    assert typed[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(typed[1:])


def test_signing_reproduces_the_go_reference_example() -> None:
    key = go_signer_key()
    assert verifier_key("PeterNeumann", raw_public_key(key)) == GO_VERIFIER
    assert sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE
    assert parse_verifier_key(GO_VERIFIER) == (
        "PeterNeumann",
        bytes.fromhex("c74f20a3"),
        raw_public_key(key),
    )
    # A verifier key of the tests of transparency-dev/formats, whose base64 holds a '+'.
    plus = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
    name, _, key_bytes = parse_verifier_key(plus)
    assert verifier_key(name, key_bytes) == plus


def test_a_checkpoint_note_verifies_by_the_specification() -> None:
    note = tlog_checkpoint(KEY, origin=ORIGIN, tree_size=42, root=ROOT)
    verifier = verifier_key(ORIGIN, raw_public_key(KEY))
    assert note.startswith(f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n\n\u2014 {ORIGIN} ")
    assert note.startswith(checkpoint_body(ORIGIN, 42, ROOT))
    assert spec_open(note, verifier) == (ORIGIN, 42, ROOT)
    opened = open_checkpoint(note, verifier)
    assert (opened.origin, opened.tree_size, opened.root) == (ORIGIN, 42, ROOT)
    # One tree head, one note: nothing in it changes from one signing to the next.
    assert tlog_checkpoint(KEY, origin=ORIGIN, tree_size=42, root=ROOT) == note
    empty = tlog_checkpoint(KEY, origin=ORIGIN, tree_size=0, root=hashlib.sha256().digest())
    assert spec_open(empty, verifier)[1] == 0


def test_a_witness_cosignature_beside_ours_is_left_alone() -> None:
    note = tlog_checkpoint(KEY, origin=ORIGIN, tree_size=7, root=ROOT)
    witness = sign_note(checkpoint_body(ORIGIN, 7, ROOT), "witness.example", OTHER_KEY)
    cosigned = note + witness.rsplit("\n\n", 1)[1]
    verifier = verifier_key(ORIGIN, raw_public_key(KEY))
    assert open_checkpoint(cosigned, verifier).tree_size == 7
    assert spec_open(cosigned, verifier)[1] == 7
    assert spec_open(cosigned, verifier_key("witness.example", raw_public_key(OTHER_KEY)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda n: n.replace("\n42\n", "\n43\n"), "does not verify"),
        (lambda n: n.replace(ORIGIN, "someone.else/log", 1), "does not verify"),
        (lambda n: n.split("\n\n")[0] + "\n", "blank line"),
        (lambda n: n.replace("\u2014 ", "- "), "signature line"),
    ],
    ids=["size", "origin", "unsigned", "not-an-em-dash"],
)
def test_a_changed_note_is_refused(change: object, message: str) -> None:
    note = tlog_checkpoint(KEY, origin=ORIGIN, tree_size=42, root=ROOT)
    changed = change(note)  # type: ignore[operator]
    verifier = verifier_key(ORIGIN, raw_public_key(KEY))
    with pytest.raises(NoteError, match=message):
        open_checkpoint(changed, verifier)
    with pytest.raises((AssertionError, ValueError)):
        spec_open(changed, verifier)


def test_a_note_by_another_key_or_a_bad_verifier_key_is_refused() -> None:
    note = tlog_checkpoint(OTHER_KEY, origin=ORIGIN, tree_size=42, root=ROOT)
    with pytest.raises(NoteError, match="no signature"):
        open_checkpoint(note, verifier_key(ORIGIN, raw_public_key(KEY)))
    good = verifier_key(ORIGIN, raw_public_key(KEY))
    name, key_hash, key = good.split("+", 2)
    not_ed25519 = base64.b64encode(bytes([0x02]) + raw_public_key(KEY)).decode()
    for bad in (
        f"{name}+00000000+{key}",  # a hash that is not the key's
        f"{name}+{key_hash}",  # no key
        f"other+{key_hash}+{key}",  # the hash covers the name
        f"{name}+{key_hash}+{not_ed25519}",
    ):
        with pytest.raises(NoteError):
            parse_verifier_key(bad)
    with pytest.raises(NoteError, match="key name"):
        verifier_key("has space", raw_public_key(KEY))

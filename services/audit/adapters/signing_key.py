"""The checkpoint signing key (Ed25519, PEM), from a file.

A deployment supplies its key through `OCSEA_AUDIT_SIGNING_KEY_FILE` (it must exist: a service
that silently made itself a new key would sign checkpoints nobody can pin). The local stack gets
one generated under var/ on first use, with its public half beside it for auditors.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings

log = get_logger("ocsea.audit.checkpoints")


class SigningKeyError(RuntimeError):
    """The configured signing key is missing or is not an Ed25519 private key."""


def load_signing_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    if not path.is_file():
        if not create:
            raise SigningKeyError(
                f"audit signing key {path} not found (OCSEA_AUDIT_SIGNING_KEY_FILE): a "
                "deployment must supply its Ed25519 key (PEM); only a local run, with neither "
                "OCSEA_DEPLOYMENT nor OCSEA_AUDIT_SIGNING_KEY_FILE set, has one generated"
            )
        return _generate(path)
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"audit signing key {path} is not an unencrypted PEM key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"audit signing key {path} is not an Ed25519 key")
    return key


def signing_key_for(settings: Settings) -> Ed25519PrivateKey:
    # A configured path, or deployment mode, means the deployment supplies the key.
    local = settings.audit_signing_key_file is None and not settings.deployment
    return load_signing_key(settings.resolved_audit_signing_key_file, create=local)


def _generate(path: Path) -> Ed25519PrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    path.with_suffix(".pub").write_bytes(public_pem)
    log.info("audit.signing_key_created", path=str(path))
    return key

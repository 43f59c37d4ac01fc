"""Bearer credentials mapped to principals; tokens are stored only as SHA-256 hashes.

Tokens are 256-bit random values, so a plain SHA-256 (not a slow password hash) is the right
tool: nothing can be guessed, and lookup stays O(1) on the hot intake path.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import AgencyType
from contracts.reports import PartnerKind


class Role(StrEnum):
    PARTNER = "partner"
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    OPERATOR = "operator"


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    role: Role
    agency: str | None = None
    agency_type: AgencyType | None = None
    partner_kind: PartnerKind | None = Field(
        default=None, description="For partners: hotline, NGO or tipline"
    )
    rate_limit_per_minute: int | None = Field(
        default=None, ge=1, description="For partners: overrides the intake's default limit"
    )
    rate_limit_burst: int | None = Field(default=None, ge=1)


class StoredPrincipal(Principal):
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class PrincipalsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principals: list[StoredPrincipal]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PrincipalStore:
    def __init__(self, principals: Iterable[StoredPrincipal]) -> None:
        self._by_hash = {
            p.token_sha256: Principal(**p.model_dump(exclude={"token_sha256"})) for p in principals
        }

    @classmethod
    def load(cls, path: Path) -> PrincipalStore:
        if not path.is_file():
            raise FileNotFoundError(
                f"principals file {path} not found: run `ocsea run` once to create demo "
                "principals, or point OCSEA_PRINCIPALS_FILE at your deployment's file"
            )
        return cls(PrincipalsFile.model_validate_json(path.read_bytes()).principals)

    def authenticate(self, token: str) -> Principal | None:
        return self._by_hash.get(token_hash(token))


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency admitting only the given roles."""

    async def dependency(request: Request) -> Principal:
        store: PrincipalStore = request.app.state.principals
        token = bearer_token(request)
        principal = store.authenticate(token) if token else None
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail={"code": "unauthenticated", "message": "a valid bearer token is required"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail={
                    "code": "forbidden",
                    "message": f"role {principal.role.value} may not do this",
                },
            )
        return principal

    return dependency


DEMO_PARTNER_KINDS = {
    "partner-hotline": PartnerKind.HOTLINE,
    "partner-ngo": PartnerKind.NGO,
    "partner-tipline": PartnerKind.TIPLINE,
}


class DemoAgency(BaseModel):
    id: str
    type: AgencyType
    supervisors: tuple[str, ...] = Field(
        default=(), description="Supervisor principals scoped to this agency"
    )


def ensure_demo_principals(
    principals_file: Path, credentials_file: Path, agencies: Iterable[DemoAgency]
) -> bool:
    """Create one demo credential per role (and per sample agency) unless they exist.

    Returns True when it created them. The plain tokens go only to `credentials_file` (0600);
    the services read hashes from `principals_file`.
    """
    if principals_file.is_file() and credentials_file.is_file():
        return False
    entries: list[tuple[str, Role, DemoAgency | None]] = [
        ("partner-hotline", Role.PARTNER, None),
        ("partner-ngo", Role.PARTNER, None),
        ("partner-tipline", Role.PARTNER, None),
        ("supervisor", Role.SUPERVISOR, None),
        ("auditor", Role.AUDITOR, None),
        ("operator", Role.OPERATOR, None),
    ]
    agencies = list(agencies)
    entries += [(f"officer-{a.id}", Role.OFFICER, a) for a in agencies]
    # Supervisors act within their agency (the coordinator's: the whole mechanism); one named
    # in the directory replaces the unscoped demo principal of the same name.
    scoped: list[tuple[str, Role, DemoAgency | None]] = [
        (name, Role.SUPERVISOR, a) for a in agencies for name in a.supervisors
    ]
    scoped_names = {name for name, _, _ in scoped}
    entries = [e for e in entries if e[0] not in scoped_names] + scoped
    stored: list[StoredPrincipal] = []
    plain: dict[str, dict[str, str | None]] = {}
    for name, role, agency in entries:
        token = secrets.token_urlsafe(32)
        principal = Principal(
            name=name,
            role=role,
            agency=agency.id if agency else None,
            agency_type=agency.type if agency else None,
            partner_kind=DEMO_PARTNER_KINDS.get(name),
        )
        stored.append(StoredPrincipal(**principal.model_dump(), token_sha256=token_hash(token)))
        plain[name] = {
            "role": role.value,
            "agency": principal.agency,
            "agency_type": principal.agency_type.value if principal.agency_type else None,
            "token": token,
        }
    _write_private(principals_file, PrincipalsFile(principals=stored).model_dump_json(indent=2))
    _write_private(credentials_file, json.dumps(plain, indent=2) + "\n")
    return True


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(path)


# Route parameters: `principal: OfficerPrincipal` admits officers only.
PartnerPrincipal = Annotated[Principal, Depends(require(Role.PARTNER))]
OfficerPrincipal = Annotated[Principal, Depends(require(Role.OFFICER))]
AuditorPrincipal = Annotated[Principal, Depends(require(Role.AUDITOR))]

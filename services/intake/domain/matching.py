"""Keyed hashes for recognising the same report, survivor, account or file again.

Identifiers (phone numbers, e-mails, handles, file hashes, names with dates of birth) are never
stored in the clear for matching: each is canonicalised and then hashed with HMAC-SHA256 under
a deployment secret, so the index can answer "seen before?" but cannot be read back, and
cannot be brute-forced without the secret (a phone number alone has too little entropy for a
plain hash to protect it).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from contracts.events import canonical_json
from contracts.reports import Contact, OnlineIdentifier, PartnerReport
from services.intake.domain.normalise import (
    canonical_email,
    canonical_handle,
    canonical_url,
    e164,
    fold,
)
from services.intake.domain.reference import Vocabulary


class LinkReason(StrEnum):
    """Why a report joined a case: the kind of identifier that matched, never the identifier."""

    SAME_SURVIVOR = "same_survivor"
    SAME_REPORTED_ACCOUNT = "same_reported_account"
    SAME_FILE = "same_file"
    SAME_SOURCE_REFERENCE = "same_source_reference"


# When identifiers point at different cases, the strongest evidence decides which case the
# report joins (the others are still listed as linked reports).
REASON_STRENGTH = (
    LinkReason.SAME_SOURCE_REFERENCE,
    LinkReason.SAME_SURVIVOR,
    LinkReason.SAME_REPORTED_ACCOUNT,
    LinkReason.SAME_FILE,
)


@dataclass(frozen=True)
class MatchKey:
    reason: LinkReason
    digest: str


def partner_case_ref(
    matcher: Matcher, partner_id: str, case_id: uuid.UUID, opener: str | None
) -> uuid.UUID:
    """The case id a partner is given: its own reference for the case.

    The partner whose report opened the case is given the case id itself; every other partner
    whose report joined it gets a keyed reference of its own, the same for all its reports on
    the case. Two partners reporting the same person so hold different references, and
    neither can tell from its reference whether its report opened the case or joined one
    (both are opaque name-based UUIDs), while inside the mechanism the reports are one case."""
    return case_id if opener == partner_id else matcher.case_reference(partner_id, case_id)


class Matcher:
    def __init__(self, secret: bytes, vocabulary: Vocabulary) -> None:
        if len(secret) < 32:
            raise ValueError("the matching secret must hold at least 32 bytes")
        self._secret = secret
        self._vocabulary = vocabulary

    def digest(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def case_reference(self, partner_id: str, case_id: uuid.UUID) -> uuid.UUID:
        """The reference a partner is given for a case it joined (see `partner_case_ref`):
        keyed, so no one without the secret can relate it to the case or to another
        partner's reference; shaped like the case ids themselves (a name-based UUID)."""
        digest = hmac.new(
            self._secret, f"case-ref\x1f{partner_id}\x1f{case_id}".encode(), hashlib.sha256
        ).digest()
        return uuid.UUID(bytes=digest[:16], version=5)

    def idempotency_key(self, partner_id: str, key: str) -> str:
        """A partner's Idempotency-Key as intake keeps it, and carries it on the report's
        event (to restore the key's answer from Kafka): keyed, since the key is the partner's
        own text and could be anything."""
        return self.digest("idempotency-key", partner_id, key)

    def request(self, channel: str, body: bytes) -> str:
        """What an Idempotency-Key is bound to: the channel and the exact body. Keyed, since
        it travels on the event and a plain hash of a short body could be guessed."""
        return hmac.new(
            self._secret, b"request\x1f" + channel.encode() + b"\n" + body, hashlib.sha256
        ).hexdigest()

    def fingerprint(self, partner_id: str, report: PartnerReport) -> str:
        """The same content from the same partner, on any channel, is the same report."""
        return self.digest(
            "report", partner_id, canonical_json(report.model_dump(mode="json")).decode()
        )

    def keys(self, partner_id: str, report: PartnerReport) -> list[MatchKey]:
        """Every identifier of the report as a keyed hash, strongest reason first, unique."""
        found: dict[str, LinkReason] = {}
        for reason, parts in self._identifiers(partner_id, report):
            found.setdefault(self.digest(*parts), reason)
        keys = [MatchKey(reason, digest) for digest, reason in found.items()]
        return sorted(keys, key=lambda k: REASON_STRENGTH.index(k.reason))

    def _identifiers(
        self, partner_id: str, report: PartnerReport
    ) -> Iterator[tuple[LinkReason, tuple[str, ...]]]:
        if report.source_reference:
            yield LinkReason.SAME_SOURCE_REFERENCE, ("ref", partner_id, report.source_reference)
        for survivor in report.survivors:
            reason = LinkReason.SAME_SURVIVOR
            yield from ((reason, parts) for parts in _contact_parts(survivor.contact))
            for identifier in survivor.online_identifiers:
                yield from ((reason, parts) for parts in self._account_parts(identifier))
            if survivor.name and survivor.date_of_birth:
                yield reason, ("person", fold(survivor.name), survivor.date_of_birth.isoformat())
        accounts = list(report.reported_persons)
        if report.source:
            accounts += report.source.intended_recipients
        for person in accounts:
            reason = LinkReason.SAME_REPORTED_ACCOUNT
            yield from ((reason, parts) for parts in _contact_parts(person.contact))
            for identifier in person.online_identifiers:
                yield from ((reason, parts) for parts in self._account_parts(identifier))
        if report.source:
            for detail in report.source.internet_details:
                contact = Contact(other_phones=detail.phones, other_emails=detail.emails)
                for parts in _contact_parts(contact):
                    yield LinkReason.SAME_REPORTED_ACCOUNT, parts
        for file in report.files:
            for file_hash in file.hashes:
                yield LinkReason.SAME_FILE, ("file", file_hash.type.value, file_hash.value)

    def _account_parts(self, identifier: OnlineIdentifier) -> Iterator[tuple[str, ...]]:
        platform = self._vocabulary.platform(identifier.platform)
        if identifier.handle and (handle := canonical_handle(identifier.handle)):
            yield "account", platform, handle
        if identifier.user_id:
            yield "account-id", platform, identifier.user_id.strip()
        if identifier.url:
            from_url = self._vocabulary.account_from_url(identifier.url)
            if from_url is not None:
                yield "account", *from_url
            else:
                yield "profile-url", canonical_url(identifier.url)


def _contact_parts(contact: Contact | None) -> Iterable[tuple[str, ...]]:
    if contact is None:
        return []
    parts: list[tuple[str, ...]] = []
    for phone in filter(None, [contact.phone, *contact.other_phones]):
        if number := e164(phone):
            parts.append(("phone", number))
    for email in filter(None, [contact.email, *contact.other_emails]):
        parts.append(("email", canonical_email(email)))
    return parts

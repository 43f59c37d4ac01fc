"""What triage reads from a report's sealed part, that it never lets the text out, and that
only what no waiting can change (an erased key, a key never had, a bad blob) reads as not read:
an unreachable key store raises, for the consumer to wait out."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts.events import EncryptedBlob, ErasureReason, ReportReceivedData, utc_now
from contracts.reports import PartnerReport, ViolenceType
from ocsea.runtime.crypto import CaseKeys
from ocsea.runtime.errors import is_infrastructure_error
from ocsea.runtime.keystore import Erasure, KeyStore
from services.intake.domain.facts import personal_fields
from services.triage.adapters.sealed import SealedReader
from services.triage.domain.case import triage_case
from services.triage.domain.reports import NOT_READ, CaseReport, SealedContent, read_sealed
from services.triage.domain.rules import shipped_rules
from services.triage.domain.signals import ScanCache, scan_texts
from testkit.triage_events import received, survivor


def test_intake_s_sealed_report_is_read_for_narratives_and_ages() -> None:
    # The sealed part is intake's canonical report: this pins the shape triage relies on.
    report = PartnerReport.model_validate(
        {
            "channel": "hotline",
            "narrative": "Marker Name said he will publish the photos; تعرضت للابتزاز",
            "survivors": [{"name": "Marker Name", "age": 14, "additional_info": "pola 8"}],
            "reported_persons": [{"age": 15, "additional_info": "classmate, hack*ed her account"}],
            "files": [{"additional_info": "went viral at school"}],
            "source": {"additional_info": "ongoing", "escalate_to_high_priority": True},
        }
    )
    sealed = read_sealed(personal_fields(report))
    assert sealed.opened
    assert sealed.reported_person_ages == (15,)
    assert len(sealed.texts) == 5
    result = triage_case([CaseReport(received(survivor(stated_age=14)), sealed)], shipped_rules())
    assert ViolenceType.SEXTORTION in result.violence_types
    assert {"content_spreading", "ongoing_abuse"} <= {f.name for f in result.factors}
    assert result.child_on_child  # the reported person is 15
    assert result.sealed_data_read
    # Only which term lists matched reaches the result: never the words themselves.
    assert "Marker" not in result.model_dump_json()
    assert "ابتزاز" not in result.model_dump_json()


def test_an_unexpected_shape_reads_as_nothing_rather_than_failing() -> None:
    sealed = read_sealed({"narrative": 42, "survivors": "?", "reported_persons": [{"age": "x"}]})
    assert sealed.opened
    assert sealed.texts == ()
    assert sealed.reported_person_ages == ()


def test_a_case_re_triaged_with_a_scan_cache_scans_each_narrative_once() -> None:
    first = CaseReport(
        received(), SealedContent(opened=True, texts=("he threatened to publish the photos",))
    )
    second = CaseReport(received(minutes=5))
    scans, rules = ScanCache(), shipped_rules()

    once = triage_case([first], rules, scans=scans)
    assert len(scans) == 1
    scan = scans.scan(first.sealed.texts, rules)
    again = triage_case([first, second], rules, scans=scans)

    assert len(scans) == 1  # the first narrative was not scanned again
    assert scans.scan(first.sealed.texts, rules) is scan
    assert scan == scan_texts(first.sealed.texts, rules)
    assert ViolenceType.SEXTORTION in once.violence_types
    assert ViolenceType.SEXTORTION in again.violence_types
    # Without a cache the result is the same: the cache saves work, it decides nothing.
    assert triage_case([first, second], rules) == again


def test_a_full_scan_cache_starts_afresh() -> None:
    scans, rules = ScanCache(max_entries=2), shipped_rules()
    for text in ("one", "two", "three"):
        scans.scan((text,), rules)
    assert len(scans) == 1


# ------------------------------------------------------------------ what counts as unreadable


class CacheMiss:
    """Case keys' Redis cache with nothing in it (a cold cache after a restart)."""

    async def mget(self, *keys: str) -> list[None]:
        return [None for _ in keys]

    async def set(self, *_args: object, **_kwargs: object) -> None:
        return None


def case_keys(store: KeyStore) -> CaseKeys:
    return CaseKeys(cast(Redis, cast(Any, CacheMiss())), os.urandom(32), store)


def sealed_report(case_id: uuid.UUID, blob: EncryptedBlob) -> ReportReceivedData:
    return received().model_copy(update={"personal": blob})


NARRATIVE = {"narrative": "he will publish the photos by tonight"}


async def test_an_unreachable_key_store_is_an_outage_to_wait_out_not_unread_data() -> None:
    # Nothing listens on port 1: the key store cannot be reached, and the report must not be
    # triaged as if its narrative said nothing (that could lower its priority).
    store = KeyStore("postgresql+asyncpg://ocsea:none@127.0.0.1:1/ocsea")
    try:
        reader = SealedReader(case_keys(store))
        case_id = uuid.uuid4()
        blob = EncryptedBlob(key_id=str(case_id), nonce="bm9uY2Vub25jZTEy", ciphertext="eA")
        with pytest.raises(ConnectionRefusedError) as failed:
            await reader.case_reports([sealed_report(case_id, blob)])
    finally:
        await store.close()
    assert is_infrastructure_error(failed.value), repr(failed.value)


async def test_only_an_erased_or_foreign_key_or_a_bad_blob_reads_as_not_read(
    tmp_path: Path,
) -> None:
    store = KeyStore(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    try:
        keys = case_keys(store)
        reader = SealedReader(keys)
        case_id, erased_id, foreign_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        plaintext = json.dumps(NARRATIVE).encode()
        readable = await keys.seal(case_id, plaintext)
        erased = await keys.seal(erased_id, plaintext)
        await store.erase(
            erased_id, Erasure(utc_now(), ErasureReason.DATA_SUBJECT_REQUEST, "operator")
        )
        # Sealed elsewhere (another deployment's intake): this key store never had its key.
        foreign = readable.model_copy(update={"key_id": str(foreign_id)})
        tampered = readable.model_copy(update={"ciphertext": erased.ciphertext})

        read = await reader.case_reports(
            [
                sealed_report(case_id, readable),
                sealed_report(erased_id, erased),
                sealed_report(foreign_id, foreign),
                sealed_report(case_id, tampered),
            ]
        )
    finally:
        await store.close()

    assert [r.sealed.opened for r in read] == [True, False, False, False]
    assert read[0].sealed.texts == (NARRATIVE["narrative"],)
    assert all(r.sealed == NOT_READ for r in read[1:])


async def test_a_failing_key_cache_raises_rather_than_reading_nothing() -> None:
    class Unreachable:
        async def open(self, case_id: uuid.UUID, blob: EncryptedBlob) -> bytes:
            raise RedisConnectionError("Redis restarting")

    case_id = uuid.uuid4()
    blob = EncryptedBlob(key_id=str(case_id), nonce="bm9uY2Vub25jZTEy", ciphertext="eA")
    with pytest.raises(RedisConnectionError) as failed:
        await SealedReader(Unreachable()).case_reports([sealed_report(case_id, blob)])
    assert is_infrastructure_error(failed.value)

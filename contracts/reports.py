"""The canonical partner report accepted by `POST /v1/reports`, and intake's other answers.

Unknown fields are refused rather than ignored: a misspelt field must never make a partner
believe a risk flag or an age was received when it was not. The mechanism takes hashes and
links, never abuse material, so no field here carries file content.

Every channel (canonical JSON, CyberTipline XML, NDJSON/CSV batches) is mapped into this one
model. Intake normalises text before validating it: ages and dates may be written with
Western, Arabic-Indic or Extended Arabic-Indic digits and a year word ("١٥ ساڵ"), times
without an offset are in the incident's time zone (Asia/Baghdad unless stated), and place,
platform and language names may be given in English, Arabic or Kurdish spellings.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

MAX_TEXT = 500
MAX_NARRATIVE = 20_000
MAX_URL = 2_000

# Secondary source fields the model has no named field for, keyed by their source path
# (e.g. "deviceId[1]/idValue"): kept and sealed, never dropped.
Details = Annotated[
    dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=MAX_NARRATIVE)]],
    Field(max_length=200),
]


def _text_or_number(description: str, examples: list[Any]) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 130},
                {"type": "string", "maxLength": 40},
            ],
            "description": description,
            "examples": examples,
        }
    )


# What partners may send is wider than what the model holds: intake turns "١٥ ساڵ" into 15
# before validation, and the published schema says so.
Years = Annotated[
    int,
    Field(ge=0, le=130),
    _text_or_number(
        "Years: an integer, or text in Western, Arabic-Indic or Extended Arabic-Indic digits "
        "with an optional year word",
        [15, "١٥ ساڵ", "۱۵ سنة", "15 years"],
    ),
]
CalendarDate = Annotated[
    date,
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 40,
            "description": "YYYY-MM-DD, or day first (DD/MM/YYYY), in any of the three digit sets",
            "examples": ["2010-05-12", "١٢/٥/٢٠١٠"],
        }
    ),
]
IncidentTime = Annotated[
    AwareDatetime,
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 60,
            "description": "ISO 8601 date-time (or date); without an offset it is read in "
            "incident.time_zone (default Asia/Baghdad). Published in UTC.",
            "examples": ["2026-11-20T21:30:00+03:00", "2026-11-20 21:30", "٢٠٢٦-١١-٢٠"],
        }
    ),
]


class Channel(StrEnum):
    HOTLINE = "hotline"
    NGO = "ngo"
    WEB_FORM = "web_form"
    TIPLINE = "tipline"
    WALK_IN = "walk_in"
    OTHER = "other"


class PartnerKind(StrEnum):
    """What kind of organisation a partner credential belongs to."""

    HOTLINE = "hotline"
    NGO = "ngo"
    TIPLINE = "tipline"


class Language(StrEnum):
    """Languages of the KRI: Kurdish Sorani, Kurdish Kurmanji/Badini, Arabic, English."""

    CKB = "ckb"
    KMR = "kmr"
    AR = "ar"
    EN = "en"


class Governorate(StrEnum):
    """KRI governorates and autonomous administrations, canonical ids."""

    ERBIL = "erbil"
    SULAYMANIYAH = "sulaymaniyah"
    DUHOK = "duhok"
    HALABJA = "halabja"
    GARMIYAN = "garmiyan"
    RAPARIN = "raparin"
    ZAKHO = "zakho"


class ViolenceType(StrEnum):
    """Types of online violence (multi-label), from the source document."""

    IMAGE_BASED_ABUSE = "image_based_abuse"
    IMAGE_BASED_SEXUAL_ABUSE = "image_based_sexual_abuse"
    SEXTORTION = "sextortion"
    GROOMING = "grooming"
    CSAM = "csam"
    LIVE_STREAMED_ABUSE = "live_streamed_abuse"
    CYBERBULLYING = "cyberbullying"
    HATE_SPEECH = "hate_speech"
    DEFAMATION = "defamation"
    CYBERSTALKING = "cyberstalking"
    DOXXING = "doxxing"
    HACKING = "hacking"
    HARASSMENT = "harassment"


class RiskFlag(StrEnum):
    """Facts that raise urgency (DOMAIN.md); absent flags never lower it."""

    IMMINENT_DANGER = "imminent_danger"
    SELF_HARM = "self_harm"
    PLANNED_MEETING = "planned_meeting"
    SEXTORTION_DEADLINE = "sextortion_deadline"
    ONGOING_ABUSE = "ongoing_abuse"
    OFFENDER_HAS_ACCESS = "offender_has_access"
    CONTENT_SPREADING = "content_spreading"
    LIVE_STREAMED = "live_streamed"
    MULTIPLE_VICTIMS = "multiple_victims"
    HONOUR_BASED_VIOLENCE_RISK = "honour_based_violence_risk"


class HashType(StrEnum):
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    PHOTODNA = "photodna"
    PDQ = "pdq"
    OTHER = "other"


class IndustryClassification(StrEnum):
    """The industry hash-sharing scale; every grade describes a minor."""

    A1 = "A1"
    A2 = "A2"
    B1 = "B1"
    B2 = "B2"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AgeRange(_Strict):
    min: Years
    max: Years

    @model_validator(mode="after")
    def _ordered(self) -> AgeRange:
        if self.min > self.max:
            raise ValueError("age_range.min must not exceed age_range.max")
        return self


class Contact(_Strict):
    """Personal data. Iraqi phone numbers are normalised to E.164 (+964…)."""

    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)
    other_phones: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, max_length=10
    )
    other_emails: list[Annotated[str, Field(max_length=254)]] = Field(
        default_factory=list, max_length=10
    )
    address: str | None = Field(default=None, max_length=MAX_TEXT)


class Location(_Strict):
    """A place: governorate and district are matched to canonical ids; the rest is personal."""

    governorate: Governorate | None = None
    district: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=200)
    region: str | None = Field(default=None, max_length=200)
    country_code: str | None = Field(default=None, max_length=2)
    description: str | None = Field(default=None, max_length=MAX_TEXT)


class OnlineIdentifier(_Strict):
    platform: str = Field(min_length=1, max_length=100)
    handle: str | None = Field(default=None, max_length=MAX_TEXT)
    url: str | None = Field(default=None, max_length=MAX_URL)
    user_id: str | None = Field(
        default=None, max_length=MAX_TEXT, description="The platform's own id (ESP identifier)"
    )
    display_name: str | None = Field(default=None, max_length=MAX_TEXT)


class IpCapture(_Strict):
    ip: str = Field(min_length=1, max_length=100)
    event: str | None = Field(default=None, max_length=100, description="Login, Upload, …")
    at: IncidentTime | None = None
    port: int | None = Field(default=None, ge=0, le=65_535)
    possible_proxy: bool | None = None


class Survivor(_Strict):
    name: str | None = Field(default=None, max_length=MAX_TEXT, description="Personal data")
    age: Years | None = Field(default=None, description="Age at the incident")
    date_of_birth: CalendarDate | None = Field(default=None, description="Personal data")
    age_range: AgeRange | None = None
    indicators: list[Annotated[str, Field(max_length=MAX_TEXT)]] = Field(
        default_factory=list, max_length=20, description="e.g. 'school grade 8'"
    )
    gender: str | None = Field(default=None, max_length=40)
    contact: Contact | None = Field(default=None, description="Personal data")
    school_name: str | None = Field(default=None, max_length=MAX_TEXT, description="Personal")
    location: Location | None = Field(default=None, description="Where the survivor lives")
    online_identifiers: list[OnlineIdentifier] = Field(default_factory=list, max_length=50)
    ip_captures: list[IpCapture] = Field(default_factory=list, max_length=50)
    additional_info: str | None = Field(default=None, max_length=MAX_NARRATIVE)
    details: Details = Field(default_factory=dict)


class ReportedPerson(_Strict):
    name: str | None = Field(default=None, max_length=MAX_TEXT, description="Personal data")
    relationship: str | None = Field(
        default=None,
        max_length=100,
        description="To the survivor, e.g. household, family, teacher, online_only",
    )
    online_identifiers: list[OnlineIdentifier] = Field(default_factory=list, max_length=50)
    contact: Contact | None = Field(default=None, description="Personal data")
    age: Years | None = None
    date_of_birth: CalendarDate | None = None
    location: Location | None = None
    ip_captures: list[IpCapture] = Field(default_factory=list, max_length=50)
    additional_info: str | None = Field(default=None, max_length=MAX_NARRATIVE)
    details: Details = Field(default_factory=dict)


_HEX_DIGEST_LENGTHS = {HashType.MD5: 32, HashType.SHA1: 40, HashType.SHA256: 64}


class FileHash(_Strict):
    type: HashType
    value: str = Field(min_length=1, max_length=400)

    @model_validator(mode="after")
    def _hex_digest(self) -> FileHash:
        length = _HEX_DIGEST_LENGTHS.get(self.type)
        if length and re.fullmatch(f"[0-9a-f]{{{length}}}", self.value) is None:
            raise ValueError(f"a {self.type.value} hash is {length} hexadecimal digits")
        return self


class FileDescription(_Strict):
    """A file described by its hashes and where it was seen; never the file itself."""

    hashes: list[FileHash] = Field(default_factory=list, max_length=10)
    file_name: str | None = Field(default=None, max_length=MAX_TEXT)
    url: str | None = Field(default=None, max_length=MAX_URL, description="Where it was seen")
    uploaded_at: IncidentTime | None = None
    annotations: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=30, description="Verbatim tags, e.g. CyberTipline's"
    )
    industry_classification: IndustryClassification | None = None
    depicts_minor: bool | None = None
    publicly_available: bool | None = None
    additional_info: str | None = Field(default=None, max_length=MAX_NARRATIVE)
    details: Details = Field(default_factory=dict)


class Incident(_Strict):
    occurred_at: IncidentTime | None = Field(
        default=None, description="When the abuse happened, with its UTC offset"
    )
    time_zone: str | None = Field(
        default=None,
        max_length=60,
        description="IANA zone for occurred_at without an offset; default Asia/Baghdad",
    )
    time_description: str | None = Field(
        default=None, max_length=MAX_TEXT, description="What the source said about the time"
    )
    governorate: Governorate | None = None
    district: str | None = Field(default=None, max_length=100)
    platform: str | None = Field(default=None, max_length=100)
    location_description: str | None = Field(default=None, max_length=MAX_TEXT)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError("not a known IANA time zone (e.g. Asia/Baghdad)") from exc
        return value


class Consent(_Strict):
    police_referral: bool | None = Field(
        default=None, description="Adult survivor's informed consent to a police referral"
    )


class Reporter(_Strict):
    """Who filed the report at the source (e.g. an online service's staff): personal data."""

    organisation: str | None = Field(default=None, max_length=MAX_TEXT)
    name: str | None = Field(default=None, max_length=MAX_TEXT)
    contact: Contact | None = None
    details: Details = Field(default_factory=dict)


class InternetDetail(_Strict):
    """One CyberTipline internet detail: where and how the incident happened online."""

    kind: str = Field(
        max_length=60,
        description="web_page, email, newsgroup, chat_im, online_gaming, "
        "cell_phone, non_internet or peer2peer",
    )
    urls: list[Annotated[str, Field(max_length=MAX_URL)]] = Field(
        default_factory=list, max_length=100
    )
    emails: list[Annotated[str, Field(max_length=254)]] = Field(default_factory=list, max_length=50)
    phones: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=50)
    ip_captures: list[IpCapture] = Field(default_factory=list, max_length=50)
    content: str | None = Field(default=None, max_length=MAX_NARRATIVE)
    additional_info: str | None = Field(default=None, max_length=MAX_NARRATIVE)
    details: Details = Field(default_factory=dict)


class RawElement(_Strict):
    """Source content the canonical model has no field for, kept verbatim (sealed)."""

    path: str = Field(min_length=1, max_length=MAX_TEXT)
    content: str = Field(max_length=MAX_NARRATIVE)


class SourceDetails(_Strict):
    """What the source itself said, verbatim: its incident types, tags, and escalation."""

    incident_types: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=20
    )
    annotations: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=30
    )
    escalate_to_high_priority: bool = False
    escalation_reason: str | None = Field(default=None, max_length=MAX_NARRATIVE)
    reporter: Reporter | None = None
    internet_details: list[InternetDetail] = Field(default_factory=list, max_length=50)
    intended_recipients: list[ReportedPerson] = Field(default_factory=list, max_length=50)
    additional_info: str | None = Field(default=None, max_length=MAX_NARRATIVE)
    details: Details = Field(
        default_factory=dict, description="e.g. the source's law-enforcement section"
    )
    raw: list[RawElement] = Field(default_factory=list, max_length=500)


class PartnerReport(_Strict):
    """One report from a hotline, NGO or tipline."""

    source_reference: str | None = Field(
        default=None, max_length=200, description="The partner's own reference for the report"
    )
    channel: Channel
    language: Language | None = None
    incident: Incident = Field(default_factory=Incident)
    survivors: list[Survivor] = Field(default_factory=list, max_length=50)
    reported_persons: list[ReportedPerson] = Field(default_factory=list, max_length=50)
    narrative: str | None = Field(default=None, max_length=MAX_NARRATIVE, description="Personal")
    categories: list[ViolenceType] = Field(default_factory=list, max_length=20)
    risk_flags: list[RiskFlag] = Field(default_factory=list, max_length=20)
    consent: Consent = Field(default_factory=Consent)
    files: list[FileDescription] = Field(
        default_factory=list, max_length=200, description="Described by hash, never attached"
    )
    content_urls: list[Annotated[str, Field(max_length=MAX_URL)]] = Field(
        default_factory=list, max_length=100, description="Where the content was seen"
    )
    source: SourceDetails | None = None


class ReportAccepted(BaseModel):
    """The answer to a partner once the broker holds the report."""

    report_id: str
    case_id: str
    duplicate_of: str | None = None


class ReportState(StrEnum):
    RECEIVED = "received"
    TRIAGED = "triaged"
    ROUTED = "routed"


class ReportStatus(BaseModel):
    """The submitting partner's view of its report: progress, never other partners' reports."""

    report_id: str
    case_id: str
    status: ReportState
    received_at: AwareDatetime
    source_format: str
    classification: str | None = None
    priority: str | None = None
    triaged_at: AwareDatetime | None = None
    routed_at: AwareDatetime | None = None
    duplicate_of: str | None = None
    duplicates_received: int = Field(
        default=0, description="Later submissions recognised as this same report"
    )
    linked_to_existing_case: bool = Field(
        default=False, description="The report joined a case opened by an earlier report"
    )
    linked_report_ids: list[str] = Field(
        default_factory=list, description="Your own earlier reports in the same case"
    )


class BatchRowStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


class BatchRowResult(BaseModel):
    line: int = Field(description="1-based line of the row in the upload")
    status: BatchRowStatus
    report_id: str | None = None
    case_id: str | None = None
    duplicate_of: str | None = None
    code: str | None = None
    message: str | None = None
    field: str | None = None


class BatchResult(BaseModel):
    accepted: int
    duplicates: int
    refused: int
    rows: list[BatchRowResult]


class ErrorBody(BaseModel):
    """Every error: a stable code, a message for people, and the field at fault."""

    code: str
    message: str
    field: str | None = None
    errors: list[dict[str, str]] = Field(default_factory=list)

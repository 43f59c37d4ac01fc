"""The canonical partner report accepted by `POST /v1/reports`.

Unknown fields are refused rather than ignored: a misspelt field must never make a partner
believe a risk flag or an age was received when it was not. The mechanism takes hashes and
links, never abuse material, so no field here carries file content.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

MAX_TEXT = 500
MAX_NARRATIVE = 20_000


class Channel(StrEnum):
    HOTLINE = "hotline"
    NGO = "ngo"
    WEB_FORM = "web_form"
    TIPLINE = "tipline"
    WALK_IN = "walk_in"
    OTHER = "other"


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AgeRange(_Strict):
    min: int = Field(ge=0, le=130)
    max: int = Field(ge=0, le=130)

    @model_validator(mode="after")
    def _ordered(self) -> AgeRange:
        if self.min > self.max:
            raise ValueError("age_range.min must not exceed age_range.max")
        return self


class Contact(_Strict):
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)


class Survivor(_Strict):
    name: str | None = Field(default=None, max_length=MAX_TEXT, description="Personal data")
    age: int | None = Field(default=None, ge=0, le=130, description="Age at the incident")
    date_of_birth: date | None = Field(default=None, description="Personal data")
    age_range: AgeRange | None = None
    indicators: list[str] = Field(
        default_factory=list, max_length=20, description="e.g. 'school grade 8'"
    )
    gender: str | None = Field(default=None, max_length=40)
    contact: Contact | None = Field(default=None, description="Personal data")


class OnlineIdentifier(_Strict):
    platform: str = Field(min_length=1, max_length=100)
    handle: str | None = Field(default=None, max_length=MAX_TEXT)
    url: str | None = Field(default=None, max_length=2_000)


class ReportedPerson(_Strict):
    name: str | None = Field(default=None, max_length=MAX_TEXT, description="Personal data")
    relationship: str | None = Field(default=None, max_length=100)
    online_identifiers: list[OnlineIdentifier] = Field(default_factory=list, max_length=50)


class Incident(_Strict):
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When the abuse happened, with its UTC offset"
    )
    governorate: Governorate | None = None
    district: str | None = Field(default=None, max_length=100)
    platform: str | None = Field(default=None, max_length=100)


class Consent(_Strict):
    police_referral: bool | None = Field(
        default=None, description="Adult survivor's informed consent to a police referral"
    )


class PartnerReport(_Strict):
    """One report from a hotline or NGO."""

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


class ReportAccepted(BaseModel):
    """The answer to a partner once the broker holds the report."""

    report_id: str
    case_id: str
    duplicate_of: str | None = None


class ErrorBody(BaseModel):
    """Every error: a stable code, a message for people, and the field at fault."""

    code: str
    message: str
    field: str | None = None
    errors: list[dict[str, str]] = Field(default_factory=list)

"""The actor directory: agencies, their units, coverage, capacity, supervisors, escalation,
delivery and response times, as validated data (a deployment edits the file, not the code).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from contracts.events import AgencyType, Classification, EscalationTarget, Priority
from contracts.reports import Governorate, Language, ViolenceType

SAMPLE_DIRECTORY = Path(__file__).with_name("sample_directory.toml")

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=100)]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
TopicName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseTime(_Config):
    acknowledge_s: int = Field(gt=0)
    first_action_s: int = Field(gt=0)
    escalation_step_s: int | None = Field(
        default=None,
        gt=0,
        description="Time between escalation steps after a missed deadline; "
        "default: the acknowledge time",
    )

    @property
    def step_s(self) -> int:
        return self.escalation_step_s or self.acknowledge_s


class Sla(_Config):
    warning_fraction: float | None = Field(
        default=0.75,
        gt=0,
        lt=1,
        description="Warn when this fraction of a response time has passed; none: no warning",
    )
    escalation_chain: tuple[EscalationTarget, ...] = (
        EscalationTarget.SUPERVISOR,
        EscalationTarget.COORDINATOR,
    )
    check_interval_s: float = Field(
        default=0.1, gt=0, le=5, description="Longest pause of the timer scheduler"
    )


class PolicyRules(_Config):
    """The facts that bring police and legal actors in; see `policy.py` for how they are used."""

    police_offence_types: tuple[ViolenceType, ...] = Field(min_length=1)
    police_offence_factors: tuple[str, ...] = Field(
        default=(), description="Triage factor names that are offences too (e.g. trafficking)"
    )
    threat_to_life_factors: tuple[str, ...] = Field(min_length=1)
    child_on_child_factors: tuple[str, ...] = ()
    legal_aid_factors: tuple[str, ...] = ()


class DeliveryRetry(_Config):
    max_attempts: int = Field(default=5, ge=1, le=50)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=5.0, gt=0)
    check_interval_s: float = Field(default=0.2, gt=0, le=5)

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1)))


class Delivery(_Config):
    """Where an agency's own system takes its tasks, besides the actor type's topic."""

    kafka_topic: TopicName | None = None
    webhook_url: AnyHttpUrl | None = None
    webhook_secret_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z][A-Z0-9_]*$",
        description="The environment variable holding the HMAC key (never the key itself)",
    )

    @model_validator(mode="after")
    def _secret_with_webhook(self) -> Delivery:
        if self.webhook_url is not None and self.webhook_secret_env is None:
            raise ValueError("a webhook_url needs webhook_secret_env (the HMAC key's variable)")
        return self


class Unit(_Config):
    id: Identifier
    name: str = Field(min_length=1)
    governorates: tuple[Governorate, ...] = Field(min_length=1)
    districts: tuple[str, ...] = Field(
        default=(), description="When given, the unit covers only these districts"
    )
    languages: tuple[Language, ...] = Field(min_length=1)
    capacity: int = Field(gt=0, description="Open tasks the unit can carry")
    handles: tuple[Classification, ...] = (Classification.TF_CSEA, Classification.TFGBV)

    def covers(self, governorate: Governorate, district: str | None) -> bool:
        """A district-bound unit covers only cases known to be in one of its districts."""
        if governorate not in self.governorates:
            return False
        if not self.districts:
            return True
        return district is not None and district.casefold() in {
            d.casefold() for d in self.districts
        }


class Agency(_Config):
    id: Identifier
    name: str = Field(min_length=1)
    type: AgencyType
    supervisors: tuple[Identifier, ...] = Field(
        default=(), description="Principal names of the agency's supervisors"
    )
    escalation_chain: tuple[EscalationTarget, ...] | None = Field(
        default=None, description="Overrides the directory's chain for this agency"
    )
    units: tuple[Unit, ...] = Field(min_length=1)
    delivery: Delivery | None = None

    @property
    def governorates(self) -> tuple[Governorate, ...]:
        return tuple(dict.fromkeys(g for u in self.units for g in u.governorates))


class Directory(_Config):
    version: str
    coordinator: Identifier
    response_times: dict[Priority, ResponseTime]
    sla: Sla = Sla()
    policy: PolicyRules
    delivery_retry: DeliveryRetry = DeliveryRetry()
    decline_reasons: tuple[Code, ...] = Field(min_length=1)
    outcome_codes: tuple[Code, ...] = Field(min_length=1)
    escalation_reasons: tuple[Code, ...] = Field(min_length=1)
    reassign_reasons: tuple[Code, ...] = Field(min_length=1)
    agencies: tuple[Agency, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Directory:
        problems: list[str] = []
        for kind, ids in (
            ("agency", [a.id for a in self.agencies]),
            ("unit", [u.id for a in self.agencies for u in a.units]),
            ("supervisor", [s for a in self.agencies for s in a.supervisors]),
        ):
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            if repeated:
                problems.append(f"{kind} ids must be unique; repeated: {', '.join(repeated)}")
        by_id = {a.id: a for a in self.agencies}
        coordinator = by_id.get(self.coordinator)
        if coordinator is None:
            problems.append(f"coordinator {self.coordinator!r} is not an agency in the directory")
        elif coordinator.type is not AgencyType.COORDINATION:
            problems.append(f"coordinator {self.coordinator!r} must have type coordination")
        missing = [p.value for p in Priority if p not in self.response_times]
        if missing:
            problems.append(f"response_times lacks priorities: {', '.join(missing)}")
        for agency in self.agencies:
            chain = self.chain_of(agency)
            if EscalationTarget.SUPERVISOR in chain and not agency.supervisors:
                problems.append(
                    f"agency {agency.id!r} escalates to its supervisor but lists no supervisors"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def agency(self, agency_id: str) -> Agency:
        return next(a for a in self.agencies if a.id == agency_id)

    def find_agency(self, agency_id: str) -> Agency | None:
        return next((a for a in self.agencies if a.id == agency_id), None)

    @property
    def coordinator_agency(self) -> Agency:
        return self.agency(self.coordinator)

    def unit(self, unit_id: str) -> tuple[Agency, Unit]:
        return next((a, u) for a in self.agencies for u in a.units if u.id == unit_id)

    def units_of(self, agency_type: AgencyType) -> Iterator[tuple[Agency, Unit]]:
        for agency in self.agencies:
            if agency.type is agency_type:
                for unit in agency.units:
                    yield agency, unit

    def chain_of(self, agency: Agency) -> tuple[EscalationTarget, ...]:
        chain = agency.escalation_chain
        return self.sla.escalation_chain if chain is None else chain

    def supervisor_agency(self, principal_name: str) -> Agency | None:
        return next((a for a in self.agencies if principal_name in a.supervisors), None)

    def webhook_secret(self, agency: Agency, environ: Mapping[str, str]) -> bytes | None:
        delivery = agency.delivery
        if delivery is None or delivery.webhook_secret_env is None:
            return None
        value = environ.get(delivery.webhook_secret_env)
        return value.encode() if value else None

    def missing_secrets(self, environ: Mapping[str, str]) -> list[str]:
        return [
            f"{a.id}: {a.delivery.webhook_secret_env}"
            for a in self.agencies
            if a.delivery is not None
            and a.delivery.webhook_url is not None
            and self.webhook_secret(a, environ) is None
        ]

    def agency_topics(self) -> list[str]:
        return sorted(
            {a.delivery.kafka_topic for a in self.agencies if a.delivery and a.delivery.kafka_topic}
        )


class DirectoryError(ValueError):
    pass


def load_directory(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Directory:
    """Read and validate the directory; with `environ`, also require the webhook keys it names."""
    path = path or SAMPLE_DIRECTORY
    try:
        directory = Directory.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DirectoryError(f"cannot read actor directory {path}: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(file)'}: {_message(e['msg'])}"
            for e in exc.errors()
        )
        raise DirectoryError(f"actor directory {path} is invalid: {problems}") from exc
    if environ is not None:
        missing = directory.missing_secrets(environ)
        if missing:
            raise DirectoryError(
                f"actor directory {path}: webhook keys not set in the environment: "
                + ", ".join(missing)
            )
    return directory


def _message(text: str) -> str:
    return re.sub(r"^Value error, ", "", text)

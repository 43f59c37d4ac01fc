"""Who gets a case: the routing policy, in one place.

1. Which kinds of actor the case needs (`required_roles`):
   - TF-CSEA (a child, or a survivor of unknown age): child protection, always.
     Police for offences (the directory's offence types and factors: CSAM, grooming, sextortion,
     trafficking, live-streamed abuse...) or a threat to life, in line with the child's best
     interests: when both parties are children, police are not brought in by default; child
     protection decides, unless there is a threat to life.
   - TFGBV (an adult survivor): GBV case management; police only with the survivor's informed
     consent, or without it when there is an imminent threat to life.
   - Legal aid wherever the survivor or the child's family seeks it.
2. Which unit takes each (`place`): a unit of that type which handles the classification and
   covers the case's area; among those, one speaking the case's language; among those, the one
   with the lowest load (open tasks / capacity), preferring units below capacity. When no unit
   covers the case, or the area is unknown, the coordinator takes the task rather than nobody.
   Units that already declined (or were reassigned away from) the case's task are skipped.

Every placement records why: the criteria the chosen unit met, and what was not met.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from contracts.directory import Agency, Directory, PolicyRules, Unit
from contracts.events import AgencyType, Classification, Priority, ReportTriagedData
from contracts.reports import Governorate, Language, ViolenceType

LEAD_ROLE = {
    Classification.TF_CSEA: AgencyType.CHILD_PROTECTION,
    Classification.TFGBV: AgencyType.GBV_CASE_MANAGEMENT,
}


@dataclass(frozen=True)
class CaseFacts:
    """What the policy looks at: the case's current combined triage result, nothing personal."""

    classification: Classification
    priority: Priority
    violence_types: frozenset[ViolenceType] = frozenset()
    factors: frozenset[str] = frozenset()
    governorate: Governorate | None = None
    district: str | None = None
    language: Language | None = None
    police_referral_consent: bool | None = None
    legal_aid_sought: bool | None = None
    child_on_child: bool = False

    @classmethod
    def from_triaged(cls, triaged: ReportTriagedData) -> CaseFacts:
        return cls(
            classification=triaged.classification,
            priority=triaged.priority,
            violence_types=frozenset(triaged.violence_types),
            factors=frozenset(f.name for f in triaged.factors),
            governorate=triaged.governorate,
            district=triaged.district,
            language=triaged.language,
            police_referral_consent=triaged.police_referral_consent,
            legal_aid_sought=triaged.legal_aid_sought,
            child_on_child=triaged.child_on_child,
        )


@dataclass(frozen=True)
class Requirement:
    role: AgencyType
    why: str


@dataclass(frozen=True)
class Requirements:
    needed: tuple[Requirement, ...]
    not_needed: tuple[str, ...] = field(default=())


def required_roles(facts: CaseFacts, rules: PolicyRules) -> Requirements:
    """The kinds of actor the case needs, each with its reason, and why others are not."""
    needed: list[Requirement] = []
    not_needed: list[str] = []
    threat = sorted(facts.factors & set(rules.threat_to_life_factors))
    if facts.classification is Classification.TF_CSEA:
        needed.append(Requirement(AgencyType.CHILD_PROTECTION, "TF-CSEA: child protection always"))
        offences = sorted(
            [v.value for v in facts.violence_types if v in rules.police_offence_types]
            + [f for f in facts.factors if f in rules.police_offence_factors]
        )
        child_on_child = facts.child_on_child or bool(
            facts.factors & set(rules.child_on_child_factors)
        )
        if threat:
            needed.append(
                Requirement(AgencyType.POLICE, f"TF-CSEA, threat to life: {', '.join(threat)}")
            )
        elif offences and child_on_child:
            not_needed.append(
                "police: both parties are children; child protection decides on police "
                "involvement in the child's best interests"
            )
        elif offences:
            needed.append(
                Requirement(AgencyType.POLICE, f"TF-CSEA offence(s): {', '.join(offences)}")
            )
        else:
            not_needed.append("police: no offence that requires police was reported")
    else:
        needed.append(
            Requirement(AgencyType.GBV_CASE_MANAGEMENT, "TFGBV: GBV case management for the adult")
        )
        if threat:
            needed.append(
                Requirement(
                    AgencyType.POLICE,
                    f"TFGBV, imminent threat to life ({', '.join(threat)}): police without "
                    "waiting for consent",
                )
            )
        elif facts.police_referral_consent is True:
            needed.append(
                Requirement(AgencyType.POLICE, "TFGBV: the survivor consented to police referral")
            )
        else:
            consent = "withheld" if facts.police_referral_consent is False else "not recorded"
            not_needed.append(f"police: survivor's consent {consent} and no threat to life")
    legal_factors = sorted(facts.factors & set(rules.legal_aid_factors))
    if facts.legal_aid_sought or legal_factors:
        needed.append(Requirement(AgencyType.LEGAL, "legal aid is sought"))
    else:
        not_needed.append("legal: legal aid not sought")
    return Requirements(tuple(needed), tuple(not_needed))


@dataclass(frozen=True)
class Placement:
    role: AgencyType
    agency: Agency
    unit: Unit
    criteria: tuple[str, ...]
    to_coordinator: bool

    @property
    def reason(self) -> str:
        return "; ".join(self.criteria)


def place(
    requirement: Requirement,
    facts: CaseFacts,
    directory: Directory,
    load: Mapping[str, int],
    exclude_units: Collection[str] = (),
) -> Placement:
    """The unit that takes one required role, and why."""
    role = requirement.role
    why = [f"needed: {requirement.why}"]
    candidates = [
        (agency, unit)
        for agency, unit in directory.units_of(role)
        if facts.classification in unit.handles and unit.id not in exclude_units
    ]
    if exclude_units:
        why.append(f"skipped units that gave the task back: {', '.join(sorted(exclude_units))}")
    if facts.governorate is None:
        return _to_coordinator(role, directory, load, [*why, "area unknown"])
    covering = [(a, u) for a, u in candidates if u.covers(facts.governorate, facts.district)]
    if not covering:
        return _to_coordinator(
            role,
            directory,
            load,
            [
                *why,
                f"no {role.value} unit handling {facts.classification.value} covers "
                f"{facts.governorate.value}",
            ],
        )
    why.append(f"{role.value} unit covering {facts.governorate.value}")
    tier = covering
    if facts.language is not None:
        speaking = [(a, u) for a, u in covering if facts.language in u.languages]
        if speaking:
            tier = speaking
            why.append(f"speaks {facts.language.value}")
        else:
            why.append(f"no covering unit speaks {facts.language.value}")
    agency, unit, note = _least_loaded(tier, load)
    why.append(note)
    return Placement(role, agency, unit, tuple(why), to_coordinator=False)


def _least_loaded(
    units: Iterable[tuple[Agency, Unit]], load: Mapping[str, int]
) -> tuple[Agency, Unit, str]:
    pool = list(units)
    with_room = [(a, u) for a, u in pool if load.get(u.id, 0) < u.capacity]
    choices = with_room or pool

    def key(pair: tuple[Agency, Unit]) -> tuple[float, int]:
        open_tasks = load.get(pair[1].id, 0)
        return (open_tasks / pair[1].capacity, open_tasks)

    agency, unit = min(choices, key=key)  # min() keeps the directory's order among equals
    open_tasks = load.get(unit.id, 0)
    note = f"load {open_tasks}/{unit.capacity}"
    if len(pool) > 1:
        note += f", least loaded of {len(pool)} eligible units"
    if not with_room:
        note += " (all eligible units at capacity)"
    return agency, unit, note


def _to_coordinator(
    role: AgencyType, directory: Directory, load: Mapping[str, int], why: list[str]
) -> Placement:
    coordinator = directory.coordinator_agency
    agency, unit, _ = _least_loaded(((coordinator, u) for u in coordinator.units), load)
    return Placement(
        role,
        agency,
        unit,
        (*why, f"routed to the coordinator, who assigns a {role.value} unit"),
        to_coordinator=True,
    )


def reassignment_placement(
    role: AgencyType,
    facts: CaseFacts,
    directory: Directory,
    agency: Agency,
    load: Mapping[str, int],
    exclude_units: Collection[str] = (),
) -> Placement:
    """A supervisor's choice of agency; the unit within it is chosen as usual."""
    units = [u for u in agency.units if u.id not in exclude_units] or list(agency.units)
    covering = [
        u for u in units if facts.governorate is not None and u.covers(facts.governorate, None)
    ]
    pool = covering or units
    chosen_agency, unit, note = _least_loaded(((agency, u) for u in pool), load)
    return Placement(
        role,
        chosen_agency,
        unit,
        (f"reassigned by a supervisor to {agency.id}", note),
        to_coordinator=agency.type is AgencyType.COORDINATION,
    )

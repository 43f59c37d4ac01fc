"""Triage rules as versioned, validated configuration (weights, thresholds, term lists).

The rule set is a TOML file (`rules.toml` beside this module is the shipped, clearly marked
sample; `OCSEA_TRIAGE_RULES_FILE` points at a deployment's own). It is validated when loaded:
a missing weight, a negative weight (which would let a known fact lower urgency), thresholds
out of order, an unknown risk flag, violence type or language stop start-up with a message
naming the file and the entry. Every result carries the rule set's `version` and a digest of
its validated content, so a result can be tied to the exact rules that produced it.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.events import AgeBasis, AgeConfidence, Priority, canonical_json
from contracts.reports import Language, RiskFlag, ViolenceType
from services.triage.domain.terms import TermMatcher

SAMPLE_RULES = Path(__file__).parent / "rules.toml"

# Bumped when the code that applies the rules changes what a rule set means; part of the
# rules digest, so equal digests mean equal behaviour, not only equal files.
ENGINE_VERSION = "triage-engine-2"


class Factor:
    """Urgency factors that are not partner risk flags (DOMAIN.md's list)."""

    CHILD_SURVIVOR = "child_survivor"
    VERY_YOUNG_CHILD = "very_young_child"
    REPEAT_REPORTS = "repeat_reports"
    SOURCE_ESCALATION = "source_escalation"

    ALL = (CHILD_SURVIVOR, VERY_YOUNG_CHILD, REPEAT_REPORTS, SOURCE_ESCALATION)


FACTOR_NAMES = frozenset({f.value for f in RiskFlag} | set(Factor.ALL))

Term = Annotated[str, Field(min_length=1, max_length=200)]
TermsByLanguage = dict[Language, list[Term]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgeRules(_Strict):
    adult_age: int = Field(ge=1, le=30)
    very_young_below: int = Field(ge=1, le=30, description="The very_young_child factor")
    report_age_adult_margin: int = Field(
        ge=0,
        le=30,
        description="With only the age today known (no incident date), the survivor counts as "
        "an adult at the abuse only from adult_age + this margin; below it, presumed child",
    )
    confidence: dict[AgeBasis, AgeConfidence]
    presumed_confidence: AgeConfidence = AgeConfidence.LOW

    @model_validator(mode="after")
    def _complete(self) -> AgeRules:
        missing = {b for b in AgeBasis if b is not AgeBasis.UNKNOWN} - set(self.confidence)
        if missing:
            raise ValueError(f"age.confidence lacks {sorted(m.value for m in missing)}")
        if self.very_young_below > self.adult_age:
            raise ValueError("age.very_young_below must not exceed age.adult_age")
        return self


class PriorityRules(_Strict):
    thresholds: dict[Priority, int] = Field(
        description="Minimum score for P1, P2 and P3; below P3's, P3 with a survivor, else P4"
    )
    identified_survivor_floor: Priority
    source_escalation_floor: Priority

    @model_validator(mode="after")
    def _ordered(self) -> PriorityRules:
        wanted = {Priority.P1, Priority.P2, Priority.P3}
        if set(self.thresholds) != wanted:
            raise ValueError("priority.thresholds must give exactly P1, P2 and P3")
        p1, p2, p3 = (self.thresholds[p] for p in (Priority.P1, Priority.P2, Priority.P3))
        if not p1 > p2 > p3 >= 1:
            raise ValueError("priority.thresholds must satisfy P1 > P2 > P3 >= 1")
        return self


class SourceValueRule(_Strict):
    """What one value of a source's own field means: labels, risks, a child, child-on-child."""

    violence_types: list[ViolenceType] = Field(default_factory=list)
    risk_flags: list[RiskFlag] = Field(default_factory=list)
    implies_minor: bool = False
    child_on_child: bool = False
    very_young_child: bool = False


class IndicatorRules(_Strict):
    """Survivor indicators are free text ("پۆلی ٨", "school grade 8", "١٥ ساڵ")."""

    grade_words: TermsByLanguage
    grade_age_offset: int = Field(ge=3, le=8, description="Age in grade N is about N + offset")
    max_grade: int = Field(ge=1, le=14)
    year_words: TermsByLanguage
    minor_terms: TermsByLanguage


class TermRules(_Strict):
    violence: dict[ViolenceType, TermsByLanguage] = Field(default_factory=dict)
    risk: dict[RiskFlag, TermsByLanguage] = Field(default_factory=dict)


class RulesFile(_Strict):
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")
    description: str = ""
    age: AgeRules
    points: dict[str, int]
    priority: PriorityRules
    relationships: dict[str, SourceValueRule] = Field(default_factory=dict)
    incident_types: dict[str, SourceValueRule] = Field(
        default_factory=dict, description="CyberTipline incidentType values, verbatim"
    )
    annotations: dict[str, SourceValueRule] = Field(
        default_factory=dict, description="CyberTipline reportAnnotations, verbatim"
    )
    file_annotations: dict[str, SourceValueRule] = Field(default_factory=dict)
    content_depicts_minor: SourceValueRule = Field(default_factory=SourceValueRule)
    indicators: IndicatorRules
    terms: TermRules = Field(default_factory=TermRules)

    @model_validator(mode="after")
    def _weights(self) -> RulesFile:
        unknown = set(self.points) - FACTOR_NAMES
        if unknown:
            raise ValueError(f"points: unknown factor(s) {sorted(unknown)}")
        missing = FACTOR_NAMES - set(self.points)
        if missing:
            raise ValueError(f"points: no weight for {sorted(missing)}")
        # A negative weight would let a known fact lower urgency.
        negative = sorted(k for k, v in self.points.items() if v < 0)
        if negative:
            raise ValueError(f"points must not be negative: {negative}")
        return self


class RulesError(ValueError):
    """The rule set is unusable; the message names the file and the entry."""


@dataclass(frozen=True)
class Rules:
    """A validated rule set with its term lists compiled for matching."""

    source: RulesFile
    digest: str
    grade_words: TermMatcher
    year_words: TermMatcher
    minor_terms: TermMatcher
    violence_terms: dict[ViolenceType, TermMatcher]
    risk_terms: dict[RiskFlag, TermMatcher]

    @property
    def version(self) -> str:
        return self.source.version

    def points(self, factor: str) -> int:
        return self.source.points[factor]

    @classmethod
    def from_model(cls, source: RulesFile) -> Rules:
        canonical = canonical_json(
            {"engine": ENGINE_VERSION, "rules": source.model_dump(mode="json")}
        )
        indicators = source.indicators
        return cls(
            source=source,
            digest="sha256:" + hashlib.sha256(canonical).hexdigest(),
            grade_words=TermMatcher.build(indicators.grade_words),
            year_words=TermMatcher.build(indicators.year_words),
            minor_terms=TermMatcher.build(indicators.minor_terms),
            violence_terms={t: TermMatcher.build(v) for t, v in source.terms.violence.items()},
            risk_terms={f: TermMatcher.build(v) for f, v in source.terms.risk.items()},
        )


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_rules(path: Path | None = None) -> Rules:
    """Load and validate a rule set; `None` is the shipped sample."""
    path = path or SAMPLE_RULES
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RulesError(f"triage rules file {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"triage rules file {path} is not valid TOML: {exc}") from exc
    try:
        return Rules.from_model(RulesFile.model_validate(raw))
    except ValidationError as exc:
        problems = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RulesError(f"triage rules file {path} is invalid: {problems}") from exc
    except ValueError as exc:  # a term that folds to nothing
        raise RulesError(f"triage rules file {path} is invalid: {exc}") from exc


@cache
def shipped_rules() -> Rules:
    """The shipped sample rule set, loaded once (tests and one-report triage use it)."""
    return load_rules(None)

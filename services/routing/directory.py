"""The actor directory: agencies, coverage, languages and response times, as validated data."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.events import AgencyType, Priority
from contracts.reports import Governorate, Language

SAMPLE_DIRECTORY = Path(__file__).with_name("sample_directory.toml")


class ResponseTime(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    acknowledge_s: int = Field(gt=0)
    first_action_s: int = Field(gt=0)


class Agency(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    type: AgencyType
    governorates: tuple[Governorate, ...] = Field(min_length=1)
    languages: tuple[Language, ...] = Field(min_length=1)


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    coordinator: str
    response_times: dict[Priority, ResponseTime]
    agencies: tuple[Agency, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Directory:
        ids = [a.id for a in self.agencies]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"agency ids must be unique; repeated: {', '.join(duplicates)}")
        if self.coordinator not in ids:
            raise ValueError(f"coordinator {self.coordinator!r} is not an agency in the directory")
        missing = [p.value for p in Priority if p not in self.response_times]
        if missing:
            raise ValueError(f"response_times lacks priorities: {', '.join(missing)}")
        return self

    def agency(self, agency_id: str) -> Agency:
        return next(a for a in self.agencies if a.id == agency_id)


class DirectoryError(ValueError):
    pass


def load_directory(path: Path | None = None) -> Directory:
    path = path or SAMPLE_DIRECTORY
    try:
        return Directory.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DirectoryError(f"cannot read actor directory {path}: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in exc.errors()
        )
        raise DirectoryError(f"actor directory {path} is invalid: {problems}") from exc

"""Fixtures for intake's pure rules: the shipped reference data, a matcher, a partner."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.intake.domain.canonical import Normalisers
from services.intake.domain.matching import Matcher
from services.intake.domain.reference import Gazetteer, Vocabulary

FIXTURES = Path(__file__).parent / "fixtures"
BAGHDAD = ZoneInfo("Asia/Baghdad")


@pytest.fixture(scope="session")
def refs() -> Normalisers:
    return Normalisers(Gazetteer.load(), Vocabulary.load(), BAGHDAD, max_base64_run=1024)


@pytest.fixture(scope="session")
def matcher(refs: Normalisers) -> Matcher:
    return Matcher(b"k" * 32, refs.vocabulary)

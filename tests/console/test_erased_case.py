"""The case page of an erased case: when and why its personal data was erased, in the page's
language, and none of the data."""

from __future__ import annotations

import pytest

from services.console.domain.i18n import Lang, catalogs
from tests.console import fakes
from tests.console.fakes import CASE_ID
from tests.console.harness import Console

ERASED_AT = "2026-11-30T09:05:00Z"  # 12:05 in Baghdad


@pytest.mark.parametrize("lang", list(Lang))
def test_an_erased_case_says_when_and_why_its_personal_data_was_erased(
    console: Console,
    monkeypatch: pytest.MonkeyPatch,
    lang: Lang,
) -> None:
    reports = fakes.CASE["reports"]
    assert isinstance(reports, list)
    erased_report = {**reports[0], "personal": None, "personal_status": "erased"}
    monkeypatch.setitem(fakes.CASE, "reports", [erased_report])
    monkeypatch.setitem(
        fakes.CASE, "personal_data_erased", {"erased_at": ERASED_AT, "reason": "legal_order"}
    )
    console.sign_in("officer-erbil-cpu", lang=lang.value)
    page = console.client.get(f"/cases/{CASE_ID}", params={"lang": lang.value})
    assert page.status_code == 200, page.text[:500]
    catalog = catalogs()[lang]
    notice = catalog.text(
        "case.erased_on",
        date=catalog.time(ERASED_AT),
        reason=catalog.label("erasure_reason", "legal_order"),
    )
    assert f'id="personal-data-erased">{notice}</p>' in page.text
    assert catalog.localise("2026-11-30 12:05") in page.text
    assert catalog.text("case.personal_erased") in page.text
    assert "MARKER" not in page.text


def test_a_case_not_erased_has_no_erasure_notice(console: Console) -> None:
    console.sign_in("officer-erbil-cpu")
    page = console.client.get(f"/cases/{CASE_ID}")
    assert page.status_code == 200
    assert "personal-data-erased" not in page.text
    assert "MARKER-NARRATIVE" in page.text

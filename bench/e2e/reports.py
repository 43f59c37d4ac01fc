"""The load: realistic, varied partner reports, every one distinct and valid.

A mix like a real month's intake: children (stated age, an age in Kurdish with Arabic-Indic
digits, a date of birth, or no age at all: presumed a child) and adults (with and without
consent to a police referral), in Erbil, Duhok, Sulaymaniyah and Halabja, in the languages the
sample directory's units speak there, with the categories, platforms and occasional risk flags
partners report, some with a narrative, a contact, a described file.

Every report is a pure function of (run, number): reproducible, and distinct from every other
report of any run: its source reference, e-mail addresses and account handles carry the run id
and the number, so intake never takes one for a duplicate of another or links it into another
report's case (a linked report may add no task, and the benchmark waits for each report's task).
Phone numbers are unique only within a run, so they are left out when a run shares its Redis
with earlier runs (`phones=False`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

BAGHDAD = timezone(timedelta(hours=3))

# governorate → (weight, languages spoken there with weights, native spellings)
GOVERNORATES: dict[str, tuple[int, tuple[tuple[str, int], ...], tuple[str, ...]]] = {
    "erbil": (40, (("ckb", 70), ("ar", 25), ("en", 5)), ("هەولێر", "Hawler", "أربيل")),
    "sulaymaniyah": (30, (("ckb", 75), ("ar", 25)), ("سلێمانی", "Slemani", "السليمانية")),
    "duhok": (22, (("kmr", 70), ("ar", 30)), ("دهۆک", "Dohuk", "دهوك")),
    "halabja": (8, (("ckb", 80), ("ar", 20)), ("هەڵەبجە", "Halabjah", "حلبجة")),
}
DISTRICTS = {
    "erbil": ("Soran", "Koya", "Shaqlawa", "Erbil Centre"),
    "sulaymaniyah": ("Dukan", "Chamchamal", "Sulaymaniyah Centre"),
    "duhok": (),
    "halabja": (),
}
PLATFORMS = (
    ("instagram", 25),
    ("facebook", 20),
    ("tiktok", 15),
    ("snapchat", 12),
    ("telegram", 10),
    ("whatsapp", 10),
    ("viber", 4),
    ("discord", 4),
)
CHILD_CATEGORIES = (
    ("sextortion", 30),
    ("grooming", 25),
    ("csam", 15),
    ("image_based_sexual_abuse", 12),
    ("cyberbullying", 12),
    ("live_streamed_abuse", 6),
)
ADULT_CATEGORIES = (
    ("image_based_abuse", 25),
    ("sextortion", 20),
    ("cyberstalking", 15),
    ("harassment", 15),
    ("doxxing", 10),
    ("hacking", 8),
    ("defamation", 7),
)
# Risk flags are occasional; the urgent ones (a P1 in the making) rare.
RISK_FLAGS = (
    ("content_spreading", 35),
    ("ongoing_abuse", 25),
    ("offender_has_access", 15),
    ("multiple_victims", 10),
    ("planned_meeting", 8),
    ("honour_based_violence_risk", 7),
)
URGENT_FLAGS = ("sextortion_deadline", "imminent_danger", "self_harm")
RELATIONSHIPS = ("online_only", "online_only", "online_only", "acquaintance", "family", "teacher")
NARRATIVES = {
    "ckb": "منداڵەکە لە ڕێگەی {platform} هەڕەشەی لێکراوە، ژمارە {number}.",
    "kmr": "Zarok li ser {platform} hat tehdîtkirin, hejmar {number}.",
    "ar": "تعرضت الضحية للتهديد عبر {platform}، رقم البلاغ {number}.",
    "en": "The survivor was threatened on {platform} (report {number}); images were demanded.",
}
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _pick(rng: random.Random, weighted: Iterable[tuple[str, int]]) -> str:
    items = list(weighted)
    return rng.choices([v for v, _ in items], weights=[w for _, w in items])[0]


def make_report(
    number: int, run: str, channel: str, *, now: datetime, phones: bool = True
) -> dict[str, Any]:
    """Report `number` of run `run`, as a partner would send it (`channel`: the partner's)."""
    rng = random.Random(f"{run}:{number}")
    tag = f"{run}-{number}"
    governorate = _pick(rng, ((g, w) for g, (w, _, _) in GOVERNORATES.items()))
    _, languages, spellings = GOVERNORATES[governorate]
    language = _pick(rng, languages)
    platform = _pick(rng, PLATFORMS)
    occurred = now - timedelta(minutes=rng.randint(30, 60 * 24 * 60))

    incident: dict[str, Any] = {
        "governorate": rng.choice(spellings) if rng.random() < 0.2 else governorate,
        "platform": platform,
    }
    if rng.random() < 0.15:  # local time in Arabic-Indic digits, no offset (read in Baghdad)
        incident["occurred_at"] = occurred.astimezone(BAGHDAD).strftime("%Y-%m-%d %H:%M")
        incident["occurred_at"] = incident["occurred_at"].translate(ARABIC_INDIC)
    else:
        incident["occurred_at"] = occurred.astimezone(BAGHDAD).isoformat(timespec="minutes")
    if DISTRICTS[governorate] and rng.random() < 0.4:
        incident["district"] = rng.choice(DISTRICTS[governorate])

    survivor: dict[str, Any] = {"name": f"Survivor {tag}", "gender": rng.choice(("f", "m"))}
    kind = rng.random()
    adult = 0.62 <= kind < 0.92
    if adult:
        survivor["age"] = rng.randint(18, 45)
    elif kind < 0.45:
        age = rng.randint(8, 17)
        survivor["age"] = f"{str(age).translate(ARABIC_INDIC)} ساڵ" if rng.random() < 0.2 else age
    elif kind < 0.55:
        born = occurred.date() - timedelta(days=rng.randint(9 * 365, 17 * 365))
        survivor["date_of_birth"] = born.isoformat()
    elif kind < 0.62:
        survivor["indicators"] = [rng.choice(("school grade 8", "secondary school pupil"))]
    # else (>= 0.92): no age at all, presumed a child
    contact: dict[str, Any] = {}
    if rng.random() < 0.5:
        contact["email"] = f"s.{tag}@mail.example"
    if phones and rng.random() < 0.3 and number < 10_000_000:
        contact["phone"] = f"0750{number:07d}"
    if contact:
        survivor["contact"] = contact

    categories = sorted(
        {_pick(rng, ADULT_CATEGORIES if adult else CHILD_CATEGORIES) for _ in range(2)}
    )
    flags: set[str] = set()
    if rng.random() < 0.15:
        flags.add(_pick(rng, RISK_FLAGS))
    if rng.random() < 0.015:
        flags.add(rng.choice(URGENT_FLAGS))

    report: dict[str, Any] = {
        "source_reference": f"BENCH-{tag}",
        "channel": channel,
        "language": language,
        "incident": incident,
        "survivors": [survivor],
        "reported_persons": [
            {
                "relationship": rng.choice(RELATIONSHIPS),
                "online_identifiers": [{"platform": platform, "handle": f"@acct_{run}_{number}"}],
            }
        ],
        "categories": categories,
        "risk_flags": sorted(flags),
    }
    if adult and rng.random() < 0.7:
        report["consent"] = {"police_referral": rng.random() < 0.55}
    if rng.random() < 0.6:
        report["narrative"] = NARRATIVES[language].format(platform=platform, number=number)
    if rng.random() < 0.1:
        digest = hashlib.sha256(f"file:{tag}".encode()).hexdigest()
        report["files"] = [
            {"hashes": [{"type": "sha256", "value": digest}], "depicts_minor": not adult}
        ]
    return report


def p1_report(run: str, number: int) -> dict[str, Any]:
    """README's "Try it" report: a 15-year-old, sextortion with a deadline tonight (P1)."""
    return {
        "source_reference": f"BENCH-P1-{run}-{number}",
        "channel": "hotline",
        "language": "ckb",
        "incident": {
            "occurred_at": datetime.now(BAGHDAD).isoformat(timespec="minutes"),
            "governorate": "erbil",
            "platform": "instagram",
        },
        "survivors": [{"age": 15}],
        "reported_persons": [
            {
                "relationship": "online_only",
                "online_identifiers": [{"platform": "instagram", "handle": f"@p1_{run}_{number}"}],
            }
        ],
        "categories": ["sextortion"],
        "risk_flags": ["sextortion_deadline"],
    }


def ndjson(reports: Iterable[dict[str, Any]]) -> bytes:
    """A batch upload's body: one report per line."""
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in reports)

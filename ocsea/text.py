"""Text normalisation both intake and triage rely on: one spelling for what partners in the
KRI write many ways (Arabic-Indic digits, invisible direction marks, Arabic and Kurdish letter
variants). Pure functions of their input; no pattern here can backtrack.
"""

from __future__ import annotations

import unicodedata

ARABIC_INDIC_DIGITS = "".join(chr(c) for c in range(0x0660, 0x066A))
EXTENDED_ARABIC_INDIC_DIGITS = "".join(chr(c) for c in range(0x06F0, 0x06FA))
_TO_WESTERN = str.maketrans(
    ARABIC_INDIC_DIGITS + EXTENDED_ARABIC_INDIC_DIGITS + "\u060d\u066b\u066c",
    "0123456789" * 2 + "/.,",
)
# Invisible direction marks that right-to-left keyboards insert around numbers.
_FORMAT_CHARS = dict.fromkeys(
    [
        0x200B,
        0x200C,
        0x200D,
        0x200E,
        0x200F,
        0x061C,
        0xFEFF,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ],
    None,
)
_TATWEEL = "\u0640"


# Kurdish and Persian letters, and Arabic spelling variants, to one Arabic letter each:
# partners writing Kurdish place names in Arabic use the nearest Arabic letters.
_LETTER_VARIANTS = str.maketrans(
    {
        "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا",
        "ى": "ي", "ی": "ي", "ې": "ي", "ێ": "ي", "ئ": "",  "ء": "",
        "ک": "ك", "گ": "ك", "ڪ": "ك",
        "ة": "ه", "ە": "ه", "ھ": "ه", "ۀ": "ه",
        "ۆ": "و", "ۇ": "و", "ؤ": "و", "ۊ": "و",
        "ڵ": "ل", "ڕ": "ر", "ڤ": "ف", "پ": "ب", "چ": "ج", "ژ": "ز",
        "ı": "i",
    }
)  # fmt: skip


def nfc(text: str) -> str:
    """Unicode NFC: one code point sequence for what looks like one text."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def clean(text: str) -> str:
    """NFC without invisible direction marks or tatweel, trimmed: for structured values."""
    return nfc(text).translate(_FORMAT_CHARS).replace(_TATWEEL, "").strip()


def western_digits(text: str) -> str:
    """Arabic-Indic (U+0660–0669) and Extended Arabic-Indic (U+06F0–06F9) digits to 0–9."""
    return text.translate(_TO_WESTERN)


def fold(text: str) -> str:
    """A spelling-insensitive key for names: case, accents, Arabic/Kurdish letter variants,
    digits, spaces and punctuation folded away (Hewlêr = hewler, گەرمیان = كرميان)."""
    decomposed = unicodedata.normalize("NFKD", western_digits(clean(text)))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    letters = stripped.casefold().translate(_LETTER_VARIANTS)
    return "".join(c for c in letters if c.isalnum())

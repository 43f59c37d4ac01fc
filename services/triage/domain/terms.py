"""Finding configured terms in free text written in Kurdish (Sorani, Kurmanji), Arabic or English.

Text and terms are folded the same way, word by word (intake's `fold`: case, accents, Arabic
and Kurdish letter variants and the three digit systems mapped to one form), so "هەڕەشە" and
"هه‌ره‌شه", or "١٥" and "۱۵" and "15", compare equal. A term is a sequence of words; a word
ending in `*` matches any word starting with it (Kurdish and Arabic attach suffixes). Arabic
words are also tried without an attached article or conjunction ("والشرف" → "شرف").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from contracts.reports import Language
from ocsea.text import clean, fold

# Letters, digits and the combining marks that belong inside Arabic-script words.
_WORD = re.compile(r"[\w\u0300-\u036f\u064b-\u065f\u0670\u06d6-\u06ed]+")
# Folded Arabic prefixes: article, and the conjunction/prepositions joined to it.
_ARABIC_PREFIXES = ("وال", "بال", "فال", "كال", "لل", "ال", "و")
_MIN_STEM = 3


def tokens(text: str) -> tuple[str, ...]:
    """The folded words of a text."""
    folded = (fold(word) for word in _WORD.findall(clean(text)))
    return tuple(word for word in folded if word)


def _variants(token: str) -> tuple[str, ...]:
    found = [token]
    for prefix in _ARABIC_PREFIXES:
        if token.startswith(prefix) and len(token) - len(prefix) >= _MIN_STEM:
            found.append(token[len(prefix) :])
    return tuple(found)


@dataclass(frozen=True)
class _Word:
    text: str
    prefix: bool

    def matches(self, variants: tuple[str, ...]) -> bool:
        if self.prefix:
            return any(v.startswith(self.text) for v in variants)
        return self.text in variants


@dataclass(frozen=True)
class Pattern:
    language: Language
    term: str
    words: tuple[_Word, ...]


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    language: Language
    term: str


def compile_term(language: Language, term: str) -> Pattern:
    words = []
    for raw in term.split():
        prefix = raw.endswith("*")
        folded = tokens(raw.rstrip("*"))
        if not folded:
            raise ValueError(f"term {term!r} ({language.value}) has a word that folds to nothing")
        # A word that folds to several (e.g. "self-harm") is matched as consecutive words.
        words += [_Word(w, False) for w in folded[:-1]] + [_Word(folded[-1], prefix)]
    if not words:
        raise ValueError(f"empty term in the {language.value} list")
    return Pattern(language, term, tuple(words))


_KEY = 2  # prefix words are indexed by their first two letters


@dataclass(frozen=True)
class TermMatcher:
    patterns: tuple[Pattern, ...]
    by_first_word: Mapping[str, tuple[Pattern, ...]]
    by_first_letters: Mapping[str, tuple[Pattern, ...]]
    short_prefixes: tuple[Pattern, ...]

    @classmethod
    def build(cls, terms: Mapping[Language, Iterable[str]]) -> TermMatcher:
        # Sorted so that the same rules always report the same matches in the same order.
        patterns = tuple(
            compile_term(language, term)
            for language in sorted(terms, key=lambda lang: lang.value)
            for term in terms[language]
        )
        exact: dict[str, list[Pattern]] = {}
        letters: dict[str, list[Pattern]] = {}
        short: list[Pattern] = []
        for pattern in patterns:
            first = pattern.words[0]
            if not first.prefix:
                exact.setdefault(first.text, []).append(pattern)
            elif len(first.text) >= _KEY:
                letters.setdefault(first.text[:_KEY], []).append(pattern)
            else:
                short.append(pattern)
        return cls(
            patterns,
            {k: tuple(v) for k, v in exact.items()},
            {k: tuple(v) for k, v in letters.items()},
            tuple(short),
        )

    def _candidates(self, variants: tuple[str, ...]) -> list[Pattern]:
        found: list[Pattern] = list(self.short_prefixes)
        for variant in variants:
            found += self.by_first_word.get(variant, ())
            found += self.by_first_letters.get(variant[:_KEY], ())
        if len(found) < 2:
            return found
        # Once each, in an order that depends on the rules only.
        unique = {(p.language.value, p.term): p for p in found}
        return [unique[key] for key in sorted(unique)]

    def find(self, text: Sequence[str] | Prepared) -> list[Match]:
        """Every occurrence of every pattern, in text order."""
        variants = text.variants if isinstance(text, Prepared) else prepare(text).variants
        found = []
        for start in range(len(variants)):
            for pattern in self._candidates(variants[start]):
                end = start + len(pattern.words)
                if end <= len(variants) and all(
                    w.matches(v) for w, v in zip(pattern.words, variants[start:end], strict=True)
                ):
                    found.append(Match(start, end, pattern.language, pattern.term))
        return found

    def languages_found(self, text: Sequence[str] | Prepared) -> tuple[Language, ...]:
        """The languages whose terms occur, in a stable order."""
        seen = {m.language for m in self.find(text)}
        return tuple(sorted(seen, key=lambda lang: lang.value))


@dataclass(frozen=True)
class Prepared:
    """A text's folded words with their spelling variants, computed once for many matchers."""

    variants: tuple[tuple[str, ...], ...]


def prepare(text: str | Sequence[str]) -> Prepared:
    words = tokens(text) if isinstance(text, str) else text
    return Prepared(tuple(_variants(w) for w in words))

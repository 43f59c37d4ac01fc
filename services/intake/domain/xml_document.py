"""A CyberTipline document's XML, parsed safely and walked with a record of what was read.

Parsing is done by defusedxml with DTDs, entity declarations and external references all
forbidden: a tipline document never needs them, and each is a way to make a parser read local
files or exhaust memory (XXE, "billion laughs"). The tree is built while counting, so a
document past the depth or element limits (or the deadline) stops being read at once.

`TrackedDocument` remembers which elements, texts and attributes the mapping consumed
(`cybertipline.py`), so that nothing a document holds is dropped unseen. Element paths look
like `/report/victim[2]/victimPerson/age`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from services.intake.domain.deadline import Deadline
from services.intake.domain.refusals import Refusal

# xs:boolean's false spellings (and a plain "no").
FALSE_WORDS = frozenset({"false", "0", "no"})
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass
class TrackedDocument:
    """The parsed tree with element paths, and a record of what the mapping consumed."""

    root: Element
    paths: dict[int, str] = field(default_factory=dict)
    parents: dict[int, Element] = field(default_factory=dict)
    consumed: set[int] = field(default_factory=set)
    consumed_text: set[int] = field(default_factory=set)
    consumed_attrs: set[tuple[int, str]] = field(default_factory=set)

    # Each element's children grouped by local name, in document order: looking a child up
    # is then a dictionary access, not a scan of its siblings (a flat 2 MiB document has tens
    # of thousands of them, and the mapping looks up dozens of names).
    by_tag: dict[int, dict[str, list[Element]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.paths[id(self.root)] = "/" + local_name(self.root.tag)
        for parent in self.root.iter():
            groups: dict[str, list[Element]] = {}
            for child in parent:
                groups.setdefault(local_name(child.tag), []).append(child)
            self.by_tag[id(parent)] = groups
            base = self.paths[id(parent)]
            for tag, group in groups.items():
                for position, child in enumerate(group, start=1):
                    suffix = f"[{position}]" if len(group) > 1 else ""
                    self.paths[id(child)] = f"{base}/{tag}{suffix}"
                    self.parents[id(child)] = parent
        self.consumed.add(id(self.root))

    def path(self, element: Element) -> str:
        return self.paths[id(element)]

    def children(self, element: Element, tag: str) -> list[Element]:
        found = self.by_tag[id(element)].get(tag, [])
        self.consumed.update(id(c) for c in found)
        return list(found)

    def child(self, element: Element, tag: str) -> Element | None:
        """The first such child; any repeat is left unconsumed and so kept in `raw`."""
        found = self.by_tag[id(element)].get(tag)
        if not found:
            return None
        self.consumed.add(id(found[0]))
        return found[0]

    def text_of(self, element: Element) -> str | None:
        self.consumed.add(id(element))
        self.consumed_text.add(id(element))
        text = (element.text or "").strip()
        return text or None

    def text(self, element: Element, tag: str) -> str | None:
        found = self.child(element, tag)
        return self.text_of(found) if found is not None else None

    def texts(self, element: Element, tag: str) -> list[str]:
        return [t for c in self.children(element, tag) if (t := self.text_of(c))]

    def flag(self, element: Element, tag: str) -> bool | None:
        """An xs:boolean child; an empty element counts as set."""
        found = self.child(element, tag)
        return None if found is None else self._is_set(found)

    def _is_set(self, element: Element) -> bool:
        text = self.text_of(element)
        return text is None or text.casefold() not in FALSE_WORDS

    def flags(self, element: Element) -> list[str]:
        """The names of the boolean children that are set, in one pass (the first of each
        name counts; a repeat is left for `raw`, as `child` does)."""
        set_names = []
        for tag, group in self.by_tag[id(element)].items():
            self.consumed.add(id(group[0]))
            if self._is_set(group[0]):
                set_names.append(tag)
        return set_names

    def attr(self, element: Element, name: str) -> str | None:
        self.consumed_attrs.add((id(element), name))
        value = element.get(name)
        return value.strip() if value and value.strip() else None

    def details(self, element: Element) -> dict[str, str]:
        """Whatever the mapping did not read inside a section (leaves, attributes, text), by
        path relative to the section, e.g. "deviceId/idValue" or "phone/@type"."""
        base_length = len(self.path(element)) + 1
        found: dict[str, str] = {}
        for node in element.iter():
            if node is element:
                continue
            node_id, relative = id(node), self.path(node)[base_length:]
            fresh = node_id not in self.consumed
            self.consumed.add(node_id)
            for name, value in node.attrib.items():
                if (node_id, name) not in self.consumed_attrs and not name.startswith(_XSI):
                    self.consumed_attrs.add((node_id, name))
                    found[f"{relative}/@{local_name(name)}"] = value
            if node_id in self.consumed_text:
                continue
            text = (node.text or "").strip()
            if fresh and len(node) == 0:
                found[relative] = text
            elif text:
                found[f"{relative}/text()"] = text
            self.consumed_text.add(node_id)
        return found

    def leftovers(self) -> Iterator[tuple[str, str | Element]]:
        """What the mapping did not read, in document order: whole unknown elements (to be
        serialised by the caller, once it knows how many there are), stray attributes, and
        text inside container elements."""
        for node in self.root.iter():
            node_id = id(node)
            if node_id not in self.consumed:
                parent = self.parents.get(node_id)
                if parent is None or id(parent) in self.consumed:
                    yield self.path(node), node
                continue
            for name, value in node.attrib.items():
                if (node_id, name) not in self.consumed_attrs and not name.startswith(_XSI):
                    yield f"{self.path(node)}/@{local_name(name)}", value
            if node_id not in self.consumed_text and (node.text or "").strip():
                yield f"{self.path(node)}/text()", (node.text or "").strip()
            for child in node:
                if (child.tail or "").strip():
                    yield f"{self.path(node)}/text()", (child.tail or "").strip()


@dataclass(frozen=True)
class XmlLimits:
    """What a CyberTipline document may hold; a real report is about 10 deep and a few
    hundred elements."""

    max_depth: int = 64
    max_elements: int = 10_000
    # More children than any element of a valid report has (the report itself: sections, up
    # to 200 files, 50 victims, 50 internet details, 50 recipients and 500 unknown elements
    # kept in `raw`): a flat document is refused as soon as the parser gets there.
    max_children: int = 1_000


DEFAULT_LIMITS = XmlLimits()


class _TooBig(Exception):  # noqa: N818 (a condition, not a fault)
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


class _LimitedTreeBuilder(TreeBuilder):
    """Builds the tree while counting: past a limit (or the deadline) the parse stops at
    once, before the rest of the document is read. Errors name the element where the parser
    was (by element names, without positions)."""

    def __init__(self, limits: XmlLimits, deadline: Deadline | None) -> None:
        super().__init__()
        self._limits, self._deadline = limits, deadline
        self._count = 0
        self._open: list[str] = []  # names of the open elements, the innermost last
        self._children = [0]  # children seen so far of each open element

    def _refuse(self, status: int, code: str, message: str, depth: int) -> _TooBig:
        return _TooBig(Refusal(status, code, message, "/" + "/".join(self._open[:depth])))

    def start(self, tag: Any, attrs: dict[Any, Any]) -> Element:
        limits = self._limits
        self._open.append(local_name(str(tag)))
        self._count += 1 + len(attrs)
        self._children[-1] += 1
        self._children.append(0)
        if self._children[-2] > limits.max_children:
            raise self._refuse(
                413,
                "xml_too_many_elements",
                f"an element holds more than {limits.max_children} elements",
                len(self._open) - 1,
            )
        if len(self._open) > limits.max_depth:
            raise self._refuse(
                422,
                "xml_too_deep",
                f"elements nested deeper than {limits.max_depth} levels",
                limits.max_depth,
            )
        if self._count > limits.max_elements:
            raise self._refuse(
                413,
                "xml_too_many_elements",
                f"more than {limits.max_elements} elements and attributes",
                1,
            )
        if self._deadline is not None and self._count % 1024 == 0:
            self._deadline.check()
        return super().start(tag, attrs)

    def end(self, tag: Any) -> Element:
        self._open.pop()
        self._children.pop()
        return super().end(tag)


def parse_document(
    body: bytes, limits: XmlLimits = DEFAULT_LIMITS, deadline: Deadline | None = None
) -> Element:
    """The XML tree, refusing DTDs, entities and external references, and documents past
    the depth or element limits (refused as soon as the parser gets there)."""
    parser = DefusedXMLParser(
        target=_LimitedTreeBuilder(limits, deadline),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    try:
        parser.feed(body)
        root: Element = parser.close()
    except _TooBig as too_big:
        raise too_big.refusal from None
    except DefusedXmlException as exc:
        raise Refusal(
            422,
            "xml_not_allowed",
            f"DTDs, entity declarations and external references are refused "
            f"({type(exc).__name__}); send a plain CyberTipline <report> document",
            "/",
        ) from None
    except ParseError as exc:
        line, column = exc.position
        raise Refusal(
            400, "invalid_xml", f"not well-formed XML at line {line}, column {column}", "/"
        ) from None
    if local_name(root.tag) != "report":
        raise Refusal(
            422, "not_a_cybertipline_report", "the root element must be <report>", f"/{root.tag}"
        )
    return root

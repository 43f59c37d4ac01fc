"""An NCMEC CyberTipline `<report>` document mapped, field by field, to the canonical report.

Parsing is done by defusedxml with DTDs, entity declarations and external references all
forbidden: a tipline document never needs them, and each is a way to make a parser read local
files or exhaust memory (XXE, "billion laughs").

Nothing is dropped. Every element and attribute the mapping reads is marked as consumed; what
is left (an element NCMEC adds next year, a vendor extension, stray text) is kept verbatim in
`source.raw` with its element path, sealed like the rest of the personal data. Secondary fields
of a known section go to that section's `details`, keyed by their element path.

Element paths in errors look like `/report/victim[2]/victimPerson/age`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder, tostring

from annotated_types import MaxLen
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser
from pydantic import ValidationError

from contracts.reports import PartnerReport, SourceDetails
from services.intake.canonical import Normalisers, prepare
from services.intake.reading import Deadline
from services.intake.refusals import (
    Problem,
    Refusal,
    refusal_from,
    text_refusal,
    validation_problems,
)

CHANNEL = "tipline"

# Incident types whose meaning is one of the mechanism's violence types without doubt; the
# verbatim type always travels too (`source_incident_types`), for triage to read itself.
CATEGORY_OF_INCIDENT_TYPE = {
    "child pornography (possession, manufacture, and distribution)": "csam",
    "online enticement of children for sexual acts": "grooming",
}
CATEGORY_OF_ANNOTATION = {"sextortion": "sextortion", "csamSolicitation": "csam"}
HASH_TYPES = {"md5": "md5", "sha1": "sha1", "sha-1": "sha1", "sha256": "sha256",
              "sha-256": "sha256", "photodna": "photodna", "pdq": "pdq"}  # fmt: skip
INTERNET_DETAIL_KINDS = {
    "webPageIncident": "web_page",
    "emailIncident": "email",
    "newsgroupIncident": "newsgroup",
    "chatImIncident": "chat_im",
    "onlineGamingIncident": "online_gaming",
    "cellPhoneIncident": "cell_phone",
    "nonInternetIncident": "non_internet",
    "peer2peerIncident": "peer2peer",
}
_FALSE = frozenset({"false", "0", "no"})
_MAX_RAW = next(
    m.max_length for m in SourceDetails.model_fields["raw"].metadata if isinstance(m, MaxLen)
)
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass
class _Document:
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
        self.paths[id(self.root)] = "/" + _local(self.root.tag)
        for parent in self.root.iter():
            groups: dict[str, list[Element]] = {}
            for child in parent:
                groups.setdefault(_local(child.tag), []).append(child)
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
        return text is None or text.casefold() not in _FALSE

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
                    found[f"{relative}/@{_local(name)}"] = value
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
                    yield f"{self.path(node)}/@{_local(name)}", value
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
        self._open.append(_local(str(tag)))
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
    body: bytes, limits: XmlLimits = XmlLimits(), deadline: Deadline | None = None
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
    if _local(root.tag) != "report":
        raise Refusal(
            422, "not_a_cybertipline_report", "the root element must be <report>", f"/{root.tag}"
        )
    return root


def parse_cybertipline(
    body: bytes,
    refs: Normalisers,
    limits: XmlLimits = XmlLimits(),
    deadline: Deadline | None = None,
) -> PartnerReport:
    """The canonical report for one CyberTipline document, or a `Refusal` whose `field` is
    the XML element path of the problem."""
    document = _Document(parse_document(body, limits, deadline))
    for node in document.root.iter():
        for value in [node.text or "", *node.attrib.values()]:
            if refusal := text_refusal(document.path(node), value, refs.max_base64_run):
                raise refusal
    if deadline is not None:
        deadline.check()
    mapping = _Mapping(document)
    raw = mapping.report()
    if deadline is not None:
        deadline.check()
    try:
        return PartnerReport.model_validate(prepare(raw, refs))
    except ValidationError as exc:
        problems = [
            Problem(mapping.element_path(p.field), p.code, p.message)
            for p in validation_problems(exc)
        ]
        raise refusal_from(problems) from None


class _Mapping:
    """CyberTipline sections → canonical fields, remembering which element each came from."""

    def __init__(self, document: _Document) -> None:
        self.doc = document
        self.origins: dict[str, str] = {"": document.path(document.root)}
        # Accounts are on the reporting service unless the section names another one.
        self.platform: str | None = None

    def element_path(self, canonical_path: str) -> str:
        """The XML path a canonical field came from (its nearest mapped ancestor's)."""
        parts = canonical_path.split(".")
        while parts:
            found = self.origins.get(".".join(parts))
            if found:
                return found
            parts.pop()
        return self.origins[""]

    def _origin(self, canonical_path: str, element: Element | None) -> None:
        if element is not None:
            self.origins[canonical_path] = self.doc.path(element)

    def report(self) -> dict[str, Any]:
        doc, root = self.doc, self.doc.root
        report: dict[str, Any] = {"channel": CHANNEL}
        source: dict[str, Any] = {}
        categories: list[str] = []
        incident: dict[str, Any] = {}

        if (reference := doc.text(root, "reportId")) is not None:
            report["source_reference"] = reference
            self._origin("source_reference", doc.child(root, "reportId"))
        if (summary := doc.child(root, "incidentSummary")) is not None:
            self._summary(summary, incident, source, categories)
        details = [
            self._internet_detail(d, i) for i, d in enumerate(doc.children(root, "internetDetails"))
        ]
        if details:
            source["internet_details"] = [d for d in details if d]
        if (law := doc.child(root, "lawEnforcement")) is not None:
            source.setdefault("details", {}).update(
                {f"lawEnforcement/{k}": v for k, v in doc.details(law).items()}
            )
        if (batched := doc.child(root, "batchedReport")) is not None:
            source.setdefault("details", {})["batchedReport/@reason"] = (
                doc.attr(batched, "reason") or ""
            )
        if (reporter := doc.child(root, "reporter")) is not None:
            source["reporter"] = self._reporter(reporter)
        if (reported := doc.child(root, "personOrUserReported")) is not None:
            self._origin("reported_persons.0", reported)
            report["reported_persons"] = [
                self._account_person(reported, "personOrUserReported", "reported_persons.0")
            ]
        recipients = doc.children(root, "intendedRecipient")
        if recipients:
            source["intended_recipients"] = []
            for index, recipient in enumerate(recipients):
                path = f"source.intended_recipients.{index}"
                self._origin(path, recipient)
                source["intended_recipients"].append(
                    self._account_person(recipient, "intendedRecipient", path)
                )
        victims = doc.children(root, "victim")
        if victims:
            report["survivors"] = [self._victim(v, i) for i, v in enumerate(victims)]
        files = doc.children(root, "fileDetails")
        if files:
            report["files"] = [self._file(f, i) for i, f in enumerate(files)]
        if (info := doc.text(root, "additionalInfo")) is not None:
            report["narrative"] = info
            self._origin("narrative", doc.child(root, "additionalInfo"))

        report["incident"] = incident
        report["categories"] = list(dict.fromkeys(categories))
        leftovers = list(itertools.islice(doc.leftovers(), _MAX_RAW + 1))
        if len(leftovers) > _MAX_RAW:
            # Refused before serialising thousands of unknown elements for nothing.
            raise Refusal(
                422,
                "too_many_items",
                f"{self.origins['']}: more than {_MAX_RAW} elements, attributes or texts that "
                "are not part of a CyberTipline report",
                self.origins[""],
            )
        raw = [
            {
                "path": path,
                "content": content
                if isinstance(content, str)
                else tostring(content, encoding="unicode").strip(),
            }
            for path, content in leftovers
        ]
        if raw:
            source["raw"] = raw
        if source:
            report["source"] = source
        return report

    def _summary(
        self,
        summary: Element,
        incident: dict[str, Any],
        source: dict[str, Any],
        categories: list[str],
    ) -> None:
        doc = self.doc
        types = doc.texts(summary, "incidentType")
        source["incident_types"] = types
        categories += [
            c for t in types if (c := CATEGORY_OF_INCIDENT_TYPE.get(t.casefold())) is not None
        ]
        self._origin("source.incident_types", doc.child(summary, "incidentType"))
        if (platform := doc.text(summary, "platform")) is not None:
            incident["platform"] = self.platform = platform
            self._origin("incident.platform", doc.child(summary, "platform"))
        escalation = doc.child(summary, "escalateToHighPriority")
        if escalation is not None:
            reason = doc.text_of(escalation)
            # NCMEC: "only enter text if you want to escalate"; an explicit false does not.
            source["escalate_to_high_priority"] = reason is None or reason.casefold() not in _FALSE
            if reason and reason.casefold() not in _FALSE | {"true", "1", "yes"}:
                source["escalation_reason"] = reason
        if (annotations := doc.child(summary, "reportAnnotations")) is not None:
            names = doc.flags(annotations)
            source["annotations"] = names
            categories += [CATEGORY_OF_ANNOTATION[n] for n in names if n in CATEGORY_OF_ANNOTATION]
        if (moment := doc.text(summary, "incidentDateTime")) is not None:
            incident["occurred_at"] = moment
            self._origin("incident.occurred_at", doc.child(summary, "incidentDateTime"))
        if (described := doc.text(summary, "incidentDateTimeDescription")) is not None:
            incident["time_description"] = described

    def _internet_detail(self, element: Element, index: int) -> dict[str, Any] | None:
        doc = self.doc
        for tag, kind in INTERNET_DETAIL_KINDS.items():
            incident = doc.child(element, tag)
            if incident is None:
                continue
            self._origin(f"source.internet_details.{index}", incident)
            detail: dict[str, Any] = {"kind": kind}
            urls = doc.texts(incident, "url")
            emails = [self._email(e) for e in doc.children(incident, "emailAddress")]
            phones = [self._phone(p) for p in doc.children(incident, "phoneNumber")]
            captures = [self._ip(c) for c in doc.children(incident, "ipCaptureEvent")]
            content = doc.text(incident, "content")
            info = doc.text(incident, "additionalInfo")
            for key, value in (
                ("urls", urls),
                ("emails", [e for e in emails if e]),
                ("phones", [p for p in phones if p]),
                ("ip_captures", captures),
                ("content", content),
                ("additional_info", info),
            ):
                if value:
                    detail[key] = value
            if extra := doc.details(incident):
                detail["details"] = extra
            return detail
        return None

    def _person_fields(self, person: Element, target: dict[str, Any], path: str) -> None:
        """A CyberTipline Person: names, phones, e-mails, addresses, age, date of birth."""
        doc = self.doc
        name = " ".join(
            t for t in (doc.text(person, "firstName"), doc.text(person, "lastName")) if t
        )
        if name:
            target["name"] = name
        contact = self._contact(person)
        if contact:
            target["contact"] = contact
        if (age := doc.child(person, "age")) is not None and (text := doc.text_of(age)):
            target["age"] = text
            self._origin(f"{path}.age", age)
        if (born := doc.child(person, "dateOfBirth")) is not None and (text := doc.text_of(born)):
            target["date_of_birth"] = text
            self._origin(f"{path}.date_of_birth", born)

    def _contact(self, holder: Element) -> dict[str, Any]:
        doc = self.doc
        phones = [p for p in (self._phone(e) for e in doc.children(holder, "phone")) if p]
        emails = [e for e in (self._email(e) for e in doc.children(holder, "email")) if e]
        addresses = [self._address(a) for a in doc.children(holder, "address")]
        contact: dict[str, Any] = {}
        if phones:
            contact["phone"], contact["other_phones"] = phones[0], phones[1:]
        if emails:
            contact["email"], contact["other_emails"] = emails[0], emails[1:]
        if addresses:
            contact["address"] = "; ".join(a for a in addresses if a)
        return contact

    def _phone(self, element: Element) -> str | None:
        number = self.doc.text_of(element)
        # The other attributes (type, verified, extension…) are left for `raw`.
        calling_code = self.doc.attr(element, "countryCallingCode")
        if number and calling_code and not number.startswith(("+", "00")):
            number = f"+{calling_code.lstrip('+')}{number.lstrip('0')}"
        return number

    def _email(self, element: Element) -> str | None:
        return self.doc.text_of(element)

    def _address(self, element: Element) -> str:
        doc = self.doc
        parts = [
            doc.text(element, tag)
            for tag in ("address", "city", "zipCode", "state", "nonUsaState", "country")
        ]
        return ", ".join(p for p in parts if p)

    def _ip(self, element: Element) -> dict[str, Any]:
        doc = self.doc
        capture: dict[str, Any] = {"ip": doc.text(element, "ipAddress") or ""}
        for key, tag in (("event", "eventName"), ("at", "dateTime"), ("port", "port")):
            if (value := doc.text(element, tag)) is not None:
                capture[key] = value
        if (proxy := doc.flag(element, "possibleProxy")) is not None:
            capture["possible_proxy"] = proxy
        return capture

    def _location(self, element: Element, path: str) -> dict[str, Any]:
        doc = self.doc
        location: dict[str, Any] = {}
        for key, tag in (("city", "city"), ("region", "region"), ("country_code", "countryCode")):
            if (value := doc.text(element, tag)) is not None:
                location[key] = value
        self._origin(path, element)
        return location

    def _identifiers(self, holder: Element, platform: str | None) -> list[dict[str, Any]]:
        """The account itself (screen name, ESP id, display name, first profile URL), then one
        identifier per further profile URL and per associated account."""
        doc = self.doc
        platform = doc.text(holder, "espService") or platform or "unknown"
        account: dict[str, Any] = {"platform": platform}
        for key, tag in (("handle", "screenName"), ("user_id", "espIdentifier")):
            if (value := doc.text(holder, tag)) is not None:
                account[key] = value
        display_names = doc.texts(holder, "displayName")
        if display_names:
            account["display_name"] = display_names[0]
        urls = doc.texts(holder, "profileUrl")
        if urls:
            account["url"] = urls[0]
        identifiers = [account] if len(account) > 1 else []
        identifiers += [{"platform": platform, "url": u} for u in urls[1:]]
        identifiers += [{"platform": platform, "display_name": n} for n in display_names[1:]]
        for associated in doc.children(holder, "associatedAccount"):
            other_platform = doc.text(associated, "platform") or platform
            entry: dict[str, Any] = {"platform": other_platform}
            for key, tag in (("handle", "screenName"), ("user_id", "espIdentifier")):
                if (value := doc.text(associated, tag)) is not None:
                    entry[key] = value
            if (url := doc.text(associated, "profileUrl")) is not None:
                entry["url"] = url
            if len(entry) > 1:
                identifiers.append(entry)
        return identifiers

    def _account_person(self, element: Element, section: str, path: str) -> dict[str, Any]:
        """A reported person or user, or an intended recipient."""
        doc = self.doc
        person: dict[str, Any] = {}
        if (details := doc.child(element, f"{section}Person")) is not None:
            self._person_fields(details, person, path)
        identifiers = self._identifiers(element, self.platform)
        if identifiers:
            person["online_identifiers"] = identifiers
        captures = [self._ip(c) for c in doc.children(element, "ipCaptureEvent")]
        if captures:
            person["ip_captures"] = captures
        if (location := doc.child(element, "estimatedLocation")) is not None:
            person["location"] = self._location(location, f"{path}.location")
        if (info := doc.text(element, "additionalInfo")) is not None:
            person["additional_info"] = info
        if extra := doc.details(element):
            person["details"] = extra
        return person

    def _victim(self, element: Element, index: int) -> dict[str, Any]:
        doc = self.doc
        path = f"survivors.{index}"
        self._origin(path, element)
        survivor: dict[str, Any] = {}
        if (person := doc.child(element, "victimPerson")) is not None:
            self._person_fields(person, survivor, path)
        identifiers = self._identifiers(element, self.platform)
        if identifiers:
            survivor["online_identifiers"] = identifiers
        if (school := doc.text(element, "schoolName")) is not None:
            survivor["school_name"] = school
        captures = [self._ip(c) for c in doc.children(element, "ipCaptureEvent")]
        if captures:
            survivor["ip_captures"] = captures
        if (location := doc.child(element, "estimatedLocation")) is not None:
            survivor["location"] = self._location(location, f"{path}.location")
        if (info := doc.text(element, "additionalInfo")) is not None:
            survivor["additional_info"] = info
        if extra := doc.details(element):
            survivor["details"] = extra
        return survivor

    def _reporter(self, element: Element) -> dict[str, Any]:
        doc = self.doc
        reporter: dict[str, Any] = {}
        if (person := doc.child(element, "reportingPerson")) is not None:
            first, last = doc.text(person, "firstName"), doc.text(person, "lastName")
            if name := " ".join(t for t in (first, last) if t):
                reporter["name"] = name
            if contact := self._contact(person):
                reporter["contact"] = contact
        if extra := doc.details(element):
            reporter["details"] = extra
        return reporter

    def _file(self, element: Element, index: int) -> dict[str, Any]:
        doc = self.doc
        path = f"files.{index}"
        self._origin(path, element)
        file: dict[str, Any] = {}
        hashes = []
        for position, hashed in enumerate(doc.children(element, "originalFileHash")):
            kind = doc.attr(hashed, "hashType") or "other"
            hashes.append(
                {"type": HASH_TYPES.get(kind.casefold(), "other"), "value": doc.text_of(hashed)}
            )
            self._origin(f"{path}.hashes.{position}", hashed)
            if kind.casefold() not in HASH_TYPES:
                file.setdefault("details", {})[f"originalFileHash[{position + 1}]/@hashType"] = kind
        if hashes:
            file["hashes"] = hashes
        for key, tag in (
            ("file_name", "fileName"),
            ("url", "locationOfFile"),
            ("uploaded_at", "uploadedToEspTimestamp"),
            ("industry_classification", "industryClassification"),
        ):
            if (value := doc.text(element, tag)) is not None:
                file[key] = value
                self._origin(f"{path}.{key}", doc.child(element, tag))
        annotations: list[str] = []
        if (tags := doc.child(element, "fileAnnotations")) is not None:
            annotations += doc.flags(tags)
        if doc.flag(element, "potentialMeme"):
            annotations.append("potentialMeme")
        if annotations:
            file["annotations"] = list(dict.fromkeys(annotations))
        if (public := doc.flag(element, "publiclyAvailable")) is not None:
            file["publicly_available"] = public
        infos = doc.texts(element, "additionalInfo")
        if infos:
            file["additional_info"] = "\n".join(infos)
        if extra := doc.details(element):
            file.setdefault("details", {}).update(extra)
        return file

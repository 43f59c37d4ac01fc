"""An NCMEC CyberTipline `<report>` document mapped, field by field, to the canonical report.

The document is parsed safely by `xml_document.py`. Nothing is dropped: every element and
attribute the mapping reads is marked as consumed; what is left (an element NCMEC adds next
year, a vendor extension, stray text) is kept verbatim in `source.raw` with its element path,
sealed like the rest of the personal data. Secondary fields of a known section go to that
section's `details`, keyed by their element path.

Element paths in errors look like `/report/victim[2]/victimPerson/age`.
"""

from __future__ import annotations

import itertools
from typing import Any
from xml.etree.ElementTree import Element, tostring

from annotated_types import MaxLen
from pydantic import ValidationError

from contracts.reports import PartnerReport, SourceDetails
from services.intake.domain.canonical import Normalisers, prepare
from services.intake.domain.deadline import Deadline
from services.intake.domain.refusals import (
    Problem,
    Refusal,
    refusal_from,
    text_refusal,
    validation_problems,
)
from services.intake.domain.xml_document import (
    DEFAULT_LIMITS,
    FALSE_WORDS,
    TrackedDocument,
    XmlLimits,
    parse_document,
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
_MAX_RAW = next(
    m.max_length for m in SourceDetails.model_fields["raw"].metadata if isinstance(m, MaxLen)
)


def parse_cybertipline(
    body: bytes,
    refs: Normalisers,
    limits: XmlLimits = DEFAULT_LIMITS,
    deadline: Deadline | None = None,
) -> PartnerReport:
    """The canonical report for one CyberTipline document, or a `Refusal` whose `field` is
    the XML element path of the problem."""
    document = TrackedDocument(parse_document(body, limits, deadline))
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

    def __init__(self, document: TrackedDocument) -> None:
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
            source["escalate_to_high_priority"] = (
                reason is None or reason.casefold() not in FALSE_WORDS
            )
            if reason and reason.casefold() not in FALSE_WORDS | {"true", "1", "yes"}:
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

"""Information-element registry: (enterprise number, element id) -> name and data type.

IANA's elements (enterprise 0) and CERT's (PEN 6871, YAF and Super Mediator) come from
the data modules ``iana_elements`` and ``cert_elements``. RFC 5103 reverse elements are
recognised in both forms: an IANA element sent under PEN 29305, and an enterprise element
with the 0x4000 bit of its id set (how CERT's registry encodes its reverse elements).
Reverse names are ``reverse`` + the forward name with its first letter capitalised.
Elements nobody registered still decode, as octet arrays named ``e<PEN>id<ID>``.
"""

from dataclasses import dataclass
from functools import lru_cache

from agent.ipfix.cert_elements import CERT_ELEMENTS
from agent.ipfix.iana_elements import IANA_ELEMENTS

IANA_PEN = 0
REVERSE_PEN = 29305
CERT_PEN = 6871
REVERSE_BIT = 0x4000
VARLEN = 0xFFFF

#: Abstract data types of RFC 7011 section 6.1 and RFC 6313 (lists).
DATA_TYPES = (
    "octetArray", "unsigned8", "unsigned16", "unsigned32", "unsigned64", "signed8",
    "signed16", "signed32", "signed64", "float32", "float64", "boolean", "macAddress",
    "string", "dateTimeSeconds", "dateTimeMilliseconds", "dateTimeMicroseconds",
    "dateTimeNanoseconds", "ipv4Address", "ipv6Address", "basicList", "subTemplateList",
    "subTemplateMultiList",
)  # fmt: skip

UNSIGNED_TYPES = frozenset({"unsigned8", "unsigned16", "unsigned32", "unsigned64"})
SIGNED_TYPES = frozenset({"signed8", "signed16", "signed32", "signed64"})
TIME_TYPES = frozenset(
    {"dateTimeSeconds", "dateTimeMilliseconds", "dateTimeMicroseconds", "dateTimeNanoseconds"}
)
LIST_TYPES = frozenset({"basicList", "subTemplateList", "subTemplateMultiList"})

_IANA = {eid: (name, dtype) for eid, name, dtype in IANA_ELEMENTS}
_CERT = {eid: (name, dtype) for eid, name, dtype, _ in CERT_ELEMENTS}


@dataclass(frozen=True, slots=True)
class Element:
    """One information element as the registry knows it."""

    pen: int
    id: int
    name: str
    type: str
    reverse: bool = False
    known: bool = True


def reverse_name(name: str) -> str:
    """RFC 5103's name of the reverse element: ``reverse`` + capitalised forward name."""
    return "reverse" + name[0].upper() + name[1:]


@lru_cache(maxsize=8192)
def lookup(pen: int, element_id: int) -> Element:
    """The element for (enterprise number, element id), with the enterprise bit cleared."""
    if pen == IANA_PEN and element_id in _IANA:
        name, dtype = _IANA[element_id]
        return Element(pen, element_id, name, dtype)
    if pen == REVERSE_PEN and element_id in _IANA:
        name, dtype = _IANA[element_id]
        return Element(pen, element_id, reverse_name(name), dtype, reverse=True)
    if pen == CERT_PEN:
        if element_id in _CERT:
            name, dtype = _CERT[element_id]
            return Element(pen, element_id, name, dtype)
        forward = element_id & ~REVERSE_BIT
        if element_id & REVERSE_BIT and forward in _CERT:
            name, dtype = _CERT[forward]
            return Element(pen, element_id, reverse_name(name), dtype, reverse=True)
    return Element(pen, element_id, f"e{pen}id{element_id}", "octetArray", known=False)


@lru_cache(maxsize=1024)
def by_name(name: str) -> Element | None:
    """The element with this name (forward or reverse), or None."""
    for eid, (ename, _) in _IANA.items():
        if ename == name:
            return lookup(IANA_PEN, eid)
        if reverse_name(ename) == name:
            return lookup(REVERSE_PEN, eid)
    for eid, (ename, _) in _CERT.items():
        if ename == name:
            return lookup(CERT_PEN, eid)
        if reverse_name(ename) == name:
            return lookup(CERT_PEN, eid | REVERSE_BIT)
    return None

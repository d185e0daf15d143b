"""Data records read one by one into dicts, with RFC 6313 structured data.

basicList values become a list under the name of the listed element; records inside a
subTemplateList or subTemplateMultiList are flattened into their parent record, as
Super Mediator's JSON does (YAF's flow statistics, TCP and MAC sub-records end up as
plain keys of the flow). A key that several sub-records carry becomes a list. Nesting
is capped, so a list that names its own template cannot recurse without end.
"""

import struct

from agent.errors import DecodeError
from agent.ipfix.elements import VARLEN, lookup
from agent.ipfix.templates import Template
from agent.ipfix.values import decode_value

MAX_DEPTH = 8
#: RFC 6313 section 4.4: noneOf, exactlyOneOf, oneOrMoreOf, allOf, ordered, undefined.
LIST_SEMANTICS = frozenset({0, 1, 2, 3, 4, 0xFF})
SKIPPED_NAMES = frozenset({"paddingOctets"})


def read_varlen(buf, pos: int, end: int) -> tuple[int, int]:
    """(content offset, content length) of a variable-length field at ``pos``."""
    if pos >= end:
        raise DecodeError("variable-length field's length octet is past the end")
    length = buf[pos]
    pos += 1
    if length == 255:
        if end - pos < 2:
            raise DecodeError("variable-length field's 3-octet length is past the end")
        length = (buf[pos] << 8) | buf[pos + 1]
        pos += 2
    if pos + length > end:
        raise DecodeError(f"variable-length field of {length} octets is past the end")
    return pos, length


class RecordReader:
    """Reads data records of one observation domain's templates into dicts."""

    def __init__(self, find_template, max_depth: int = MAX_DEPTH):
        self.find_template = find_template
        self.max_depth = max_depth
        self.missing_subtemplates = 0

    def read_set(self, buf, pos: int, end: int, template: Template) -> list[dict]:
        """Every record of a data set's body; trailing padding shorter than a record ends it."""
        records = []
        while end - pos >= template.min_length:
            record: dict = {}
            pos = self.read_record(buf, pos, end, template, record, 0)
            records.append(record)
        return records

    def read_record(self, buf, pos: int, end: int, template: Template, out: dict, depth: int):
        """Decode one record at ``pos`` into ``out``; returns the offset after it."""
        if depth > self.max_depth:
            raise DecodeError(f"structured data nested deeper than {self.max_depth} levels")
        for fld in template.fields:
            if fld.length == VARLEN:
                start, length = read_varlen(buf, pos, end)
            else:
                start, length = pos, fld.length
                if start + length > end:
                    raise DecodeError(
                        f"field {fld.element.name} past the end of its record",
                        template_id=template.template_id,
                    )
            pos = start + length
            element = fld.element
            if element.name in SKIPPED_NAMES:
                continue
            if element.type == "basicList":
                name, values = self._basic_list(buf, start, start + length, depth)
                _merge(out, name, values)
            elif element.type == "subTemplateList":
                self._sub_template_list(buf, start, start + length, out, depth)
            elif element.type == "subTemplateMultiList":
                self._sub_template_multi_list(buf, start, start + length, out, depth)
            else:
                _merge(out, element.name, decode_value(element.type, buf[start:pos]))
        return pos

    def _semantic(self, buf, pos: int, end: int) -> None:
        if pos >= end:
            raise DecodeError("structured data header is past the end")
        if buf[pos] not in LIST_SEMANTICS:
            raise DecodeError(f"unknown list semantic {buf[pos]}")

    def _basic_list(self, buf, pos: int, end: int, depth: int) -> tuple[str, list]:
        if end - pos == 0:
            return "basicList", []
        self._semantic(buf, pos, end)
        if end - pos < 5:
            raise DecodeError("basicList header is past the end")
        eid, length = struct.unpack_from("!HH", buf, pos + 1)
        pos += 5
        pen = 0
        if eid & 0x8000:
            if end - pos < 4:
                raise DecodeError("basicList enterprise number is past the end")
            pen = struct.unpack_from("!I", buf, pos)[0]
            pos += 4
        element = lookup(pen, eid & 0x7FFF)
        if length == 0:
            raise DecodeError("basicList element length is 0")
        values = []
        while pos < end:
            if length == VARLEN:
                start, size = read_varlen(buf, pos, end)
            else:
                start, size = pos, length
                if start + size > end:
                    raise DecodeError("basicList element is past the end")
            pos = start + size
            if element.type == "basicList" or element.type.startswith("subTemplate"):
                if depth + 1 > self.max_depth:
                    raise DecodeError(
                        f"structured data nested deeper than {self.max_depth} levels"
                    )
                nested: dict = {}
                if element.type == "basicList":
                    name, inner = self._basic_list(buf, start, pos, depth + 1)
                    nested[name] = inner
                elif element.type == "subTemplateList":
                    self._sub_template_list(buf, start, pos, nested, depth + 1)
                else:
                    self._sub_template_multi_list(buf, start, pos, nested, depth + 1)
                values.append(nested)
            else:
                values.append(decode_value(element.type, buf[start:pos]))
        return element.name, values

    def _sub_template_list(self, buf, pos: int, end: int, out: dict, depth: int) -> None:
        if end - pos == 0:
            return
        self._semantic(buf, pos, end)
        if end - pos < 3:
            raise DecodeError("subTemplateList header is past the end")
        tid = struct.unpack_from("!H", buf, pos + 1)[0]
        self._records(buf, pos + 3, end, tid, out, depth)

    def _sub_template_multi_list(self, buf, pos: int, end: int, out: dict, depth: int) -> None:
        if end - pos == 0:
            return
        self._semantic(buf, pos, end)
        pos += 1
        while pos < end:
            if end - pos < 4:
                raise DecodeError("subTemplateMultiList entry header is past the end")
            tid, length = struct.unpack_from("!HH", buf, pos)
            if length < 4 or pos + length > end:
                raise DecodeError(
                    f"subTemplateMultiList entry length {length} is out of bounds",
                    template_id=tid,
                )
            self._records(buf, pos + 4, pos + length, tid, out, depth)
            pos += length

    def _records(self, buf, pos: int, end: int, tid: int, out: dict, depth: int) -> None:
        template = self.find_template(tid)
        if template is None:
            self.missing_subtemplates += 1
            return
        while pos < end:
            if end - pos < template.min_length:
                raise DecodeError("sub-template records do not fill their list", template_id=tid)
            pos = self.read_record(buf, pos, end, template, out, depth + 1)


def _merge(out: dict, name: str, value) -> None:
    if name not in out:
        out[name] = value
    elif isinstance(out[name], list) and getattr(out[name], "repeated", False):
        out[name].append(value)
    else:
        out[name] = _Repeated([out[name], value])


class _Repeated(list):
    """A key several sub-records carried: its values in order."""

    repeated = True

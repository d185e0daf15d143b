"""IPFIX collection (RFC 7011, 5103, 6313, 5655): messages in, flow-table rows out.

``Decoder`` decodes messages of any number of exporters and sessions; ``iter_messages``
cuts an IPFIX file or TCP stream into messages; ``decode_file`` reads a whole file
into a ``FLOW_DTYPE`` array.
"""

import logging
from pathlib import Path

import numpy as np

from agent.errors import DecodeError
from agent.ipfix.decode import Decoder, MessageResult
from agent.ipfix.flowplan import concat_flows
from agent.ipfix.message import iter_messages

__all__ = ["Decoder", "MessageResult", "decode_file", "iter_messages"]

log = logging.getLogger(__name__)


def decode_file(path, *, strict: bool = False, decoder: Decoder | None = None) -> np.ndarray:
    """Every flow record of an IPFIX file (messages back to back) as a ``FLOW_DTYPE`` array.

    With ``strict`` the first malformed message raises ``DecodeError`` (its ``offset`` is
    the message's offset in the file); otherwise problems are logged and counted on the
    decoder, and every record that could be decoded is returned.
    """
    decoder = decoder or Decoder()
    session = str(path)
    parts = []
    with Path(path).open("rb") as stream:
        try:
            for offset, message in iter_messages(stream):
                result = decoder.decode_message(message, session)
                parts.append(result.flows)
                if result.error is not None:
                    result.error.offset = offset
                    result.error.args = (result.error._describe(),)
                    if strict:
                        raise result.error
                    log.warning("ipfix file=%s %s", path, result.error)
        except DecodeError as exc:
            if strict:
                raise
            log.warning("ipfix file=%s %s", path, exc)
    return concat_flows(parts)

"""The template store: sessions and domains, withdrawal, redefinition, lifetime, caps."""

import struct

from test_ipfix_decode import (
    FLOW_TID,
    data_set,
    message,
    template_set,
    yaf_record,
    yaf_templates,
)

from agent.errors import MissingTemplateError
from agent.ipfix import Decoder

SIMPLE = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1)]


def simple_record(port: int) -> bytes:
    """A record of the SIMPLE template with source port ``port``."""
    return bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!HHB", port, 53, 17)


def test_data_before_template_is_counted_not_decoded():
    """A data set whose template is unknown is counted and yields no flows."""
    decoder = Decoder()
    result = decoder.decode_message(message(data_set(FLOW_TID, yaf_record(1))), "s")
    assert len(result.flows) == 0
    assert isinstance(result.error, MissingTemplateError)
    assert result.error.template_id == FLOW_TID
    assert decoder.counters["error_missing_template"] == 1
    decoder.decode_message(message(yaf_templates()), "s")
    later = decoder.decode_message(message(data_set(FLOW_TID, yaf_record(1))), "s")
    assert later.error is None and len(later.flows) == 1


def test_templates_are_kept_per_session_and_domain():
    """The same template id in another domain or session is a different template."""
    decoder = Decoder()
    decoder.decode_message(message(template_set(300, SIMPLE), domain=1), "a")
    other_domain = decoder.decode_message(message(data_set(300, simple_record(1)), domain=2), "a")
    other_session = decoder.decode_message(message(data_set(300, simple_record(1))), "b")
    same = decoder.decode_message(message(data_set(300, simple_record(1)), domain=1), "a")
    assert isinstance(other_domain.error, MissingTemplateError)
    assert isinstance(other_session.error, MissingTemplateError)
    assert same.error is None and len(same.flows) == 1


def test_withdrawal_forgets_the_template():
    """A withdrawal (field count 0) makes later data for that template missing."""
    decoder = Decoder()
    decoder.decode_message(message(template_set(300, SIMPLE)), "s")
    withdraw = struct.pack("!HHHH", 2, 8, 300, 0)
    decoder.decode_message(message(withdraw), "s")
    result = decoder.decode_message(message(data_set(300, simple_record(1))), "s")
    assert isinstance(result.error, MissingTemplateError)
    assert decoder.counters["template_withdrawals"] == 1
    assert decoder.templates.count("s") == 0


def test_withdraw_all_templates_of_a_domain():
    """Template id 2 with field count 0 withdraws every template of the domain."""
    decoder = Decoder()
    decoder.decode_message(message(template_set(300, SIMPLE), template_set(301, SIMPLE)), "s")
    decoder.decode_message(message(struct.pack("!HHHH", 2, 8, 2, 0)), "s")
    assert decoder.templates.count("s") == 0


def test_redefinition_uses_the_new_layout():
    """A template id sent again with other fields decodes later data with the new fields."""
    decoder = Decoder()
    decoder.decode_message(message(template_set(300, SIMPLE)), "s")
    first = decoder.decode_message(message(data_set(300, simple_record(7))), "s")
    assert first.flows["sourceTransportPort"].tolist() == [7]
    swapped = [(12, 4), (8, 4), (11, 2), (7, 2), (4, 1)]
    decoder.decode_message(message(template_set(300, swapped)), "s")
    second = decoder.decode_message(message(data_set(300, simple_record(7))), "s")
    assert second.flows["destinationTransportPort"].tolist() == [7]
    assert decoder.counters["template_redefinitions"] == 1


def test_udp_templates_expire_after_their_lifetime():
    """Over UDP a template not refreshed within the lifetime is forgotten."""
    decoder = Decoder(template_lifetime=10.0)
    udp = ("udp", "192.0.2.1", 4739)
    decoder.decode_message(message(template_set(300, SIMPLE)), udp, now=100.0)
    fresh = decoder.decode_message(message(data_set(300, simple_record(1))), udp, now=105.0)
    stale = decoder.decode_message(message(data_set(300, simple_record(1))), udp, now=111.0)
    assert fresh.error is None
    assert isinstance(stale.error, MissingTemplateError)
    assert decoder.counters["templates_expired"] == 1


def test_tcp_and_file_templates_do_not_expire():
    """Sessions that are not UDP keep templates whatever the clock says."""
    decoder = Decoder(template_lifetime=10.0)
    tcp = ("tcp", "192.0.2.1", 1)
    decoder.decode_message(message(template_set(300, SIMPLE)), tcp, now=0.0)
    later = decoder.decode_message(message(data_set(300, simple_record(1))), tcp, now=1e6)
    assert later.error is None and len(later.flows) == 1


def test_template_flood_is_capped_per_session():
    """Past the cap new templates are refused and counted; memory stays bounded."""
    decoder = Decoder(max_templates_per_session=10)
    for tid in range(256, 300):
        decoder.decode_message(message(template_set(tid, SIMPLE)), "s")
    assert decoder.templates.count("s") == 10
    assert decoder.counters["error_template_cap"] == 34
    assert decoder.decode_message(message(template_set(256, SIMPLE)), "s").error is None


def test_forget_session_drops_everything():
    """A closed TCP connection's templates are dropped."""
    decoder = Decoder()
    decoder.decode_message(message(template_set(300, SIMPLE)), "s")
    decoder.forget_session("s")
    assert decoder.templates.count("s") == 0
    assert decoder.decode_message(message(data_set(300, simple_record(1))), "s").error


def test_sequence_numbers_count_loss_and_reordering():
    """A forward jump counts lost records; a late message counts as reordered."""
    decoder = Decoder()
    rec = simple_record(1)
    decoder.decode_message(message(template_set(300, SIMPLE), seq=0), "s")
    decoder.decode_message(message(data_set(300, rec * 2), seq=0), "s")
    decoder.decode_message(message(data_set(300, rec * 3), seq=2), "s")
    assert decoder.counters.get("records_lost", 0) == 0
    decoder.decode_message(message(data_set(300, rec), seq=9), "s")
    assert decoder.counters["records_lost"] == 4
    decoder.decode_message(message(data_set(300, rec), seq=7), "s")
    assert decoder.counters["messages_reordered"] == 1
    assert decoder.counters["records_lost"] == 3


def test_sequence_is_tracked_per_domain():
    """Two domains of one session keep separate sequence numbers."""
    decoder = Decoder()
    for domain in (1, 2):
        decoder.decode_message(message(template_set(300, SIMPLE), domain=domain), "s")
    decoder.decode_message(message(data_set(300, simple_record(1)), domain=1, seq=0), "s")
    decoder.decode_message(message(data_set(300, simple_record(1)), domain=2, seq=0), "s")
    decoder.decode_message(message(data_set(300, simple_record(1)), domain=1, seq=1), "s")
    assert decoder.counters.get("records_lost", 0) == 0
    assert decoder.counters.get("messages_reordered", 0) == 0

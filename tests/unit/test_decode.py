"""Decode: format detection from content, Zeek TSV headers, and every kind of bad input."""

from __future__ import annotations

import pytest

from schemas.errors import ValidationError
from tests.conftest import ZEEK_TSV, raw_line
from transforms.decode import decode_line, parse_zeek_header
from transforms.sources import read_lines

HEADER = (
    b"#separator \\x09",
    b"#set_separator\t,",
    b"#empty_field\t(empty)",
    b"#unset_field\t-",
    b"#path\tconn",
    b"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tlocal_orig\ttunnel_parents",
    b"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tbool\tset[string]",
)


def test_zeek_tsv_markers_sets_and_booleans() -> None:
    record = decode_line(
        raw_line(b"1093521678.945447\tCHh\t10.0.0.57\t2387\t10.0.0.3\t502\ttcp\t-\tT\ta,b", HEADER)
    )
    assert record.kind == "zeek.conn"
    assert record.source_format == "zeek_tsv"
    assert record.fields["service"] is None  # unset "-"
    assert record.fields["local_orig"] is True
    assert record.fields["tunnel_parents"] == ["a", "b"]
    assert record.fields["ts"] == "1093521678.945447"  # typing is Validate's job


def test_zeek_tsv_empty_field_and_escapes() -> None:
    record = decode_line(
        raw_line(b"1.0\tC\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t(empty)\tF\t(empty)", HEADER)
    )
    assert record.fields["service"] == ""
    assert record.fields["local_orig"] is False
    assert record.fields["tunnel_parents"] == []
    escaped = decode_line(raw_line(b"1.0\tC\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\ta\\x09b\tF\t-", HEADER))
    assert escaped.fields["service"] == "a\tb"


def test_custom_separator_and_markers() -> None:
    header = (
        b"#separator |",
        b"#set_separator|;",
        b"#empty_field|EMPTY",
        b"#unset_field|NONE",
        b"#path|dnp3",
        b"#fields|ts|uid|id.orig_h|id.orig_p|id.resp_h|id.resp_p|fc_request|fc_reply|iin",
        b"#types|time|string|addr|port|addr|port|string|string|count",
    )
    parsed = parse_zeek_header(header)
    assert parsed.separator == "|" and parsed.unset_field == "NONE"
    record = decode_line(raw_line(b"1.5|C1|10.0.0.8|2789|10.0.0.3|20000|NONE|RESPONSE|0", header))
    assert record.kind == "zeek.dnp3"
    assert record.fields["fc_request"] is None
    assert record.fields["fc_reply"] == "RESPONSE"


def test_header_change_inside_one_file(tmp_path) -> None:
    path = tmp_path / "mixed.log"
    conn = (ZEEK_TSV / "zeek_modbus_conn_2016.log").read_bytes()
    modbus = (ZEEK_TSV / "zeek_modbus_2016.log").read_bytes()
    path.write_bytes(conn + modbus)
    kinds = [decode_line(line).kind for line in read_lines(str(path))]
    assert kinds[:9] == ["zeek.conn"] * 9
    assert set(kinds[9:]) == {"zeek.modbus"} and len(kinds) == 9 + 300


def test_zeek_json_with_and_without_path() -> None:
    with_path = decode_line(
        raw_line(
            b'{"_path":"modbus","ts":1.0,"uid":"C","id.orig_h":"10.0.0.1","func":"READ_COILS"}'
        )
    )
    assert (with_path.kind, with_path.source_format) == ("zeek.modbus", "zeek_json")
    inferred = decode_line(raw_line(b'{"ts":1.0,"uid":"C","fc_request":"READ","fc_reply":null}'))
    assert inferred.kind == "zeek.dnp3"
    nested = decode_line(
        raw_line(b'{"ts":1.0,"uid":"C","id":{"orig_h":"10.0.0.1","orig_p":1},"conn_state":"SF"}')
    )
    assert nested.kind == "zeek.conn" and nested.fields["id.orig_h"] == "10.0.0.1"


def test_suricata_and_platform_detection() -> None:
    eve = decode_line(raw_line(b'{"timestamp":"2026-01-01T00:00:00.0+0000","event_type":"modbus"}'))
    assert (eve.kind, eve.source_format) == ("suricata.modbus", "suricata_eve")
    envelope = decode_line(raw_line(b'{"schema":"robotlab.sensor/v1","message_id":"m1"}'))
    assert (envelope.kind, envelope.source_format) == ("platform.v1", "platform_json")


@pytest.mark.parametrize(
    ("payload", "context", "message"),
    [
        (b"\x00\x01\x02\xff\xfe garbage", None, "not valid UTF-8"),
        (b"plain text line", None, "neither a JSON object nor a Zeek TSV line"),
        (b'{"event_type": "modbus", "src_ip": ', None, "malformed JSON"),
        (b"[1, 2, 3]", None, "must be an object"),
        (b'{"event_type":"tls"}', None, "unknown record kind 'suricata.tls'"),
        (b'{"schema":"robotlab.sensor/v9"}', None, "unknown platform envelope schema"),
        (b'{"hello":"world"}', None, "unknown record kind"),
        (b"1.0\tC\t10.0.0.1", HEADER, "has 3 columns but its #fields header names 10"),
        (b"1.0\tC\t\xff\xfe\t1\t10.0.0.2\t2\ttcp\t-\tT\t-", HEADER, "not valid UTF-8"),
    ],
)
def test_bad_input_is_a_validation_error(payload: bytes, context, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        decode_line(raw_line(payload, context))
    assert caught.value.stage == "decode"


def test_record_over_the_size_limit() -> None:
    big = b'{"event_type":"flow","pad":"' + b"x" * (1 << 20) + b'"}'
    with pytest.raises(ValidationError, match="over the 1048576-byte limit"):
        decode_line(raw_line(big))
    with pytest.raises(ValidationError, match="over the 10-byte limit"):
        decode_line(raw_line(b'{"event_type":"flow"}'), max_record_bytes=10)


def test_unknown_zeek_log_path() -> None:
    header = tuple(h.replace(b"#path\tconn", b"#path\thttp") for h in HEADER)
    with pytest.raises(ValidationError, match=r"unknown record kind 'zeek\.http'"):
        decode_line(raw_line(b"1.0\tC\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\tT\t-", header))


def test_headerless_fixture_names_the_missing_header() -> None:
    lines = list(read_lines(str(ZEEK_TSV / "icsnpp_opcua_binary_headerless.log")))
    assert len(lines) == 37
    for line in lines:
        with pytest.raises(ValidationError, match="#fields header"):
            decode_line(line)


def test_header_without_fields_line() -> None:
    with pytest.raises(ValidationError, match="no #fields header"):
        decode_line(raw_line(b"1.0\tC", (b"#separator \\x09", b"#path\tconn")))


def test_header_changes_back_and_forth_with_a_custom_separator(tmp_path) -> None:
    def block(fields: str) -> bytes:
        return (
            b"#separator |\n#set_separator|,\n#empty_field|(empty)\n#unset_field|-\n#path|dnp3\n"
            + f"#fields|{fields}\n".encode()
            + b"#types|time|string|addr|port|addr|port|string|string|count\n"
        )

    first = "ts|uid|id.orig_h|id.orig_p|id.resp_h|id.resp_p|fc_request|fc_reply|iin"
    swapped = "ts|uid|id.orig_h|id.orig_p|id.resp_h|id.resp_p|fc_reply|fc_request|iin"
    line = b"1.5|C1|10.0.0.8|2789|10.0.0.3|20000|A|B|0\n"
    path = tmp_path / "dnp3.log"
    path.write_bytes(block(first) + line + block(swapped) + line + block(first) + line)
    requests = [decode_line(raw).fields["fc_request"] for raw in read_lines(str(path))]
    assert requests == ["A", "B", "A"]


def test_hash_lines_outside_zeek_headers_are_records(tmp_path) -> None:
    path = tmp_path / "agent.jsonl"
    path.write_bytes(b"#not a zeek directive\n## a comment\n#close\t2026-01-01\n{}\n")
    lines = list(read_lines(str(path)))
    assert [line.payload for line in lines] == [b"#not a zeek directive", b"{}"]
    with pytest.raises(ValidationError):
        decode_line(lines[0])

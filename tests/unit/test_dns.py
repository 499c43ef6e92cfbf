"""Pure logic of the DNS switch: validation, canonical values, planning, CAS decisions, Route 53 batch limits."""

from __future__ import annotations

import pytest
from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_route53 import Route53Provider

ZONE = "phoenix.test"


def rec(name: str, values: list[str], rtype: str = "A", ttl: int | None = 5) -> dict:
    return {"name": name, "type": rtype, "values": values, "ttl": ttl}


@pytest.mark.parametrize(("rtype", "given", "canonical"), [
    ("A", " 127.0.20.1 ", "127.0.20.1"),
    ("AAAA", "2001:DB8:0:0::1", "2001:db8::1"),
    ("CNAME", "API.Phoenix.Test", "api.phoenix.test."),
    ("TXT", "region=east epoch=1", '"region=east epoch=1"'),
    ("TXT", '"already" "quoted"', '"already" "quoted"'),
    ("TXT", 'say "hi"', '"say \\"hi\\""'),
    ("MX", "10 mail.phoenix.test.", "10 mail.phoenix.test."),
])
def test_values_are_canonical(rtype: str, given: str, canonical: str) -> None:
    assert _dns.canonical_value(rtype, given) == canonical


@pytest.mark.parametrize("given", ["127.1", "01.2.3.4", "1.2.3.04", "0x7f.0.0.1", "1.2.3.4 abc", "256.1.1.1", "1.2.3",
                                   ""])
def test_the_ipv4_fast_path_takes_only_canonical_dotted_quads(given: str) -> None:
    """inet_aton accepts '127.1', octal/hex parts and trailing junk: the round trip must send them to the strict
    check, which refuses them."""
    with pytest.raises(_dns.ValidationError, match="is not an IPv4 address"):
        _dns.canonical_value("A", given)


@pytest.mark.parametrize(("given", "expected"), [
    ("API.Phoenix.Test", "api.phoenix.test."), ("*.phoenix.test.", "*.phoenix.test."),
    ("_acme-challenge.x1.phoenix.test", "_acme-challenge.x1.phoenix.test."),
    ("a.*.phoenix.test", None), ("-a.phoenix.test", None), ("a-.phoenix.test", None), ("a..phoenix.test", None),
    ("x" * 64 + ".phoenix.test", None), ("a b.phoenix.test", None),
])
def test_the_name_fast_path_agrees_with_the_label_checks(given: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(_dns.ValidationError):
            _dns.absolute_name(given)
    else:
        assert _dns.absolute_name(given) == expected


def test_long_txt_is_split_into_255_byte_strings() -> None:
    value = _dns.canonical_value("TXT", "x" * 300)
    assert value == f'"{"x" * 255}" "{"x" * 45}"'


@pytest.mark.parametrize(("record", "message"), [
    (rec("api.phoenix.test", ["1.2.3.4"], rtype="SPF"), "type 'SPF' is not supported"),
    (rec("api.phoenix.test", ["1.2.3.4"], ttl=True), "ttl True must be an integer"),
    (rec("api.phoenix.test", ["1.2.3.4"], ttl="5"), "ttl '5' must be an integer"),
    (rec("*.x.*.phoenix.test", ["1.2.3.4"]), "'*' only as the first label"),
    (rec("x" * 60 + "." + "y" * 60 + "." + "z" * 60 + "." + "w" * 60 + ".phoenix.test", ["1.2.3.4"]),
     "longer than 253"),
    (rec("api.phoenix.test", ["not an mx"], rtype="MX"), "is not valid MX data"),
    (rec("phoenix.test.evil", ["1.2.3.4"]), "is not in zone phoenix.test."),
])
def test_invalid_records_are_refused(record: dict, message: str) -> None:
    with pytest.raises(_dns.ValidationError, match=message.replace("*", r"\*").replace("(", r"\(")):
        _dns.normalize_records([record], ZONE, 300)


def test_duplicates_and_empty_lists_are_refused() -> None:
    with pytest.raises(_dns.ValidationError, match="listed twice"):
        _dns.normalize_records([rec("api.phoenix.test", ["1.1.1.1"]), rec("API.phoenix.test.", ["2.2.2.2"])], ZONE, 5)
    with pytest.raises(_dns.ValidationError, match="at least one record"):
        _dns.normalize_records([], ZONE, 5)


def test_default_ttl_absent_state_and_wildcard() -> None:
    desired = _dns.normalize_records([
        rec("*.phoenix.test", ["1.1.1.1"], ttl=None),
        {"name": "old.phoenix.test", "type": "A", "state": "absent"},
    ], ZONE, 300)
    assert desired == {("*.phoenix.test.", "A"): rec("*.phoenix.test.", ["1.1.1.1"], ttl=300),
                       ("old.phoenix.test.", "A"): None}


def test_plan_compares_values_as_sets_and_ttl() -> None:
    current = {("a.phoenix.test.", "A"): rec("a.phoenix.test.", ["1.1.1.1", "2.2.2.2"])}
    same = {("a.phoenix.test.", "A"): rec("a.phoenix.test.", ["1.1.1.1", "2.2.2.2"])}
    ttl = {("a.phoenix.test.", "A"): rec("a.phoenix.test.", ["1.1.1.1", "2.2.2.2"], ttl=60)}
    assert _dns.plan_changes(current, same) == []
    assert [c["after"]["ttl"] for c in _dns.plan_changes(current, ttl)] == [60]
    assert _dns.plan_changes({}, {("x.phoenix.test.", "A"): None}) == []  # absent and wanted absent


def test_expect_without_ttl_ignores_ttl_and_empty_values_mean_absent() -> None:
    expect = _dns.normalize_expect([{"name": "a.phoenix.test", "type": "A", "values": ["1.1.1.1"]},
                                    {"name": "b.phoenix.test", "type": "A", "values": []}], ZONE)
    current = {("a.phoenix.test.", "A"): rec("a.phoenix.test.", ["1.1.1.1"], ttl=3600), ("b.phoenix.test.", "A"): None}
    assert _dns.cas_mismatches(current, expect) == []
    current[("b.phoenix.test.", "A")] = rec("b.phoenix.test.", ["9.9.9.9"])
    assert _dns.cas_mismatches(current, expect) == [("b.phoenix.test.", "A")]


@pytest.mark.parametrize(("text", "parsed"), [
    ("10.0.0.1", ("10.0.0.1", 53)), ("10.0.0.1:5353", ("10.0.0.1", 5353)), ("[::1]:5353", ("::1", 5353)),
    ("::1", ("::1", 53)), ("ns1.example.com", ("ns1.example.com", 53)),
])
def test_server_strings(text: str, parsed: tuple) -> None:
    assert _dns.parse_server(text, 53) == parsed


@pytest.mark.parametrize("text", ["10.0.0.1:http", "10.0.0.1:70000", ":53"])
def test_bad_server_strings(text: str) -> None:
    with pytest.raises(_dns.ValidationError):
        _dns.parse_server(text, 53)


class FakeProvider(_dns.DnsProvider):
    """In-memory provider: exercises switch()'s decisions; the real providers have integration tests."""

    name = "fake"

    def __init__(self, data: dict) -> None:
        self.zone = "phoenix.test."
        self.data = dict(data)
        self.sent: list = []

    def resolve_zone(self) -> None:
        return None

    def read(self, keys):
        return {k: self.data.get(k) for k in keys}

    def apply(self, batch, expect):
        self.sent.append((batch, expect))
        for change in batch:
            self.data[change["key"]] = change["after"]
        return {}


def test_switch_conflict_sends_nothing_and_already_applied_is_not_a_failure() -> None:
    key = ("_active.phoenix.test.", "TXT")
    provider = FakeProvider({key: rec(key[0], ['"region=east epoch=1"'], rtype="TXT")})
    mine = _dns.normalize_records([rec("_active.phoenix.test", ["region=west epoch=2 run=a"], "TXT")], ZONE, 5)
    expect = _dns.normalize_expect([{"name": "_active.phoenix.test", "type": "TXT", "values": ["region=east epoch=9"]}],
                                   ZONE)
    with pytest.raises(_dns.ConflictError, match='is "region=east epoch=1" ttl=5, expected "region=east epoch=9"'):
        _dns.switch(provider, mine, expect)
    assert provider.sent == []
    good = _dns.normalize_expect([{"name": "_active.phoenix.test", "type": "TXT", "values": ["region=east epoch=1"]}],
                                 ZONE)
    assert _dns.switch(provider, mine, good, check_mode=True)["cas"] == "matched" and provider.sent == []
    assert _dns.switch(provider, mine, good)["cas"] == "swapped" and len(provider.sent) == 1
    again = _dns.switch(provider, mine, good)
    assert again["cas"] == "already_applied" and not again["changed"] and len(provider.sent) == 1


def _route53_plan(count: int, existing: bool, expect_keys: int = 0, allow_split: bool = False):
    provider = Route53Provider(zone=ZONE, client=object())
    changes, expect = [], {}
    for i in range(count):
        name = f"h{i}.phoenix.test."
        before = rec(name, [f"10.0.{i // 250}.{i % 250}"]) if existing else None
        if existing:
            provider._raw[(name, "A")] = {"Name": name, "Type": "A", "TTL": 5,
                                          "ResourceRecords": [{"Value": before["values"][0]}]}
        changes.append({"key": (name, "A"), "before": before, "after": rec(name, [f"10.9.{i // 250}.{i % 250}"])})
        if i < expect_keys:
            expect[(name, "A")] = before
    return provider, provider.plan_batches(changes, expect, allow_split)


def test_route53_counts_records_like_route53_does() -> None:
    # 1000 CREATEs: 1000 ResourceRecord elements, exactly the limit, one batch
    provider, batches = _route53_plan(1000, existing=False)
    assert len(batches) == 1 and len(provider._batches[0]) == 1000
    # 1000 UPSERTs count twice: refused unless split
    with pytest.raises(_dns.ValidationError, match="2000 ResourceRecord elements of 1000"):
        _route53_plan(1000, existing=True)
    provider, batches = _route53_plan(1000, existing=True, allow_split=True)
    assert [len(b) for b in batches] == [500, 500]


def test_route53_guarded_records_go_first_as_delete_plus_create_pairs() -> None:
    provider, _batches = _route53_plan(700, existing=True, expect_keys=3, allow_split=True)
    first = provider._batches[0]
    assert [a["Action"] for a in first[:6]] == ["DELETE", "CREATE"] * 3
    assert first[0]["ResourceRecordSet"]["Name"] == "h0.phoenix.test"  # exact old rrset, name without the dot
    assert all(a["Action"] == "UPSERT" for a in first[6:])
    # a DELETE/CREATE pair is never split across batches
    for actions in provider._batches:
        assert actions[0]["Action"] != "CREATE"


def test_route53_value_characters_limit() -> None:
    provider = Route53Provider(zone=ZONE, client=object())
    big = "x" * 250
    changes = [{"key": (f"t{i}.phoenix.test.", "TXT"), "before": None,
                "after": rec(f"t{i}.phoenix.test.", [_dns.canonical_value("TXT", big + str(i))], "TXT")}
               for i in range(130)]
    with pytest.raises(_dns.ValidationError, match="value characters of 32000"):
        provider.plan_batches(changes, {}, False)


def _wire_response(qname: str, rtype: str, answers: list[tuple[str, str, int, str]], aa: bool = True,
                   rcode: int = 0) -> bytes:
    import dns.flags
    import dns.message
    import dns.rrset

    query = dns.message.make_query(qname, rtype)
    response = dns.message.make_response(query)
    if aa:
        response.flags |= dns.flags.AA
    response.set_rcode(rcode)
    for name, atype, ttl, value in answers:
        response.answer.append(dns.rrset.from_text(name, ttl, "IN", atype, value))
    return response.to_wire()


def test_own_answer_parser_follows_compression_and_matches_the_exact_owner() -> None:
    """The light parser used for 1000s of queries agrees with dnspython on a CNAME chain."""
    wire = _wire_response("www.phoenix.test.", "A", [("www.phoenix.test.", "CNAME", 5, "api.phoenix.test."),
                                                      ("api.phoenix.test.", "A", 7, "127.0.20.1")])
    _, answer = _dns._parse_answer(wire)
    server = ("127.0.0.1", 53)
    # the A record belongs to api, not www: www has no A record of its own
    assert _dns.rrset_from_response(("www.phoenix.test.", "A"), answer, server) is None
    assert [(n, t) for n, t, _, _ in answer.rrs] == [("www.phoenix.test.", 5), ("api.phoenix.test.", 1)]
    wire = _wire_response("t.phoenix.test.", "TXT", [("t.phoenix.test.", "TXT", 5, '"b" "c"'),
                                                      ("t.phoenix.test.", "TXT", 5, '"a"')])
    _, answer = _dns._parse_answer(wire)
    assert _dns.rrset_from_response(("t.phoenix.test.", "TXT"), answer, server) == {
        "name": "t.phoenix.test.", "type": "TXT", "ttl": 5, "values": ['"a"', '"b" "c"']}


def test_answers_without_authority_or_refused_mean_zone_not_served() -> None:
    server = ("127.0.0.1", 53)
    for wire in (_wire_response("a.phoenix.test.", "A", [], aa=False), _wire_response("a.phoenix.test.", "A", [],
                                                                                      rcode=5)):
        with pytest.raises(_dns.DnsError, match="zone not served there"):
            _dns.rrset_from_response(("a.phoenix.test.", "A"), _dns._parse_answer(wire)[1], server)
    with pytest.raises(_dns.TransientError, match="SERVFAIL"):
        _dns.rrset_from_response(("a.phoenix.test.", "A"),
                                 _dns._parse_answer(_wire_response("a.phoenix.test.", "A", [], rcode=2))[1], server)
    nxdomain = _dns._parse_answer(_wire_response("a.phoenix.test.", "A", [], rcode=3))[1]
    assert _dns.rrset_from_response(("a.phoenix.test.", "A"), nxdomain, server) is None


def test_rfc2136_change_over_one_message_is_refused_before_sending() -> None:
    import base64

    from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns_rfc2136 import Rfc2136Provider

    provider = Rfc2136Provider("127.0.0.1", 9, ZONE, "k", base64.b64encode(b"0" * 32).decode())
    long_label = "x" * 60
    changes = [{"key": (f"{long_label}.{i}.phoenix.test.", "A"), "before": None,
                "after": rec(f"{long_label}.{i}.phoenix.test.", ["10.0.0.1"])} for i in range(1200)]
    message = r"change \(1200 records\) needs an UPDATE message of \d+ bytes, over the 65535-byte DNS limit"
    with pytest.raises(_dns.ValidationError, match=message):
        provider.plan_batches(changes, {}, False)


class LostAnswerProvider(FakeProvider):
    """The first send lands but its answer is lost (a timeout); the retry then meets its own change."""

    def apply(self, batch, expect):
        if not self.sent:
            super().apply(batch, expect)
            raise _dns.TransientError("timed out waiting for the answer")
        self.sent.append((batch, expect))
        raise _dns.ConflictError("prerequisite not met (NXRRSET)")


def test_a_retried_send_that_meets_its_own_landed_change_is_success() -> None:
    key = ("_active.phoenix.test.", "TXT")
    provider = LostAnswerProvider({key: rec(key[0], ['"region=east epoch=1"'], rtype="TXT")})
    mine = _dns.normalize_records([rec("_active.phoenix.test", ["region=west epoch=2 run=a"], "TXT")], ZONE, 5)
    expect = _dns.normalize_expect([{"name": "_active.phoenix.test", "type": "TXT", "values": ["region=east epoch=1"]}],
                                   ZONE)
    outcome = _dns.switch(provider, mine, expect, retry_timeout=5)
    assert outcome["cas"] == "swapped" and outcome["changed"]
    assert outcome["batches"][0]["note"] == "applied by an earlier attempt whose answer was lost"
    assert len(outcome["retries"]) == 1


def test_a_conflict_on_the_first_send_is_a_conflict() -> None:
    key = ("_active.phoenix.test.", "TXT")

    class Raced(FakeProvider):
        def apply(self, batch, expect):
            self.data[key] = rec(key[0], ['"theirs"'], rtype="TXT")  # someone else wrote first
            raise _dns.ConflictError("prerequisite not met (NXRRSET)")

    provider = Raced({key: rec(key[0], ['"region=east epoch=1"'], rtype="TXT")})
    mine = _dns.normalize_records([rec("_active.phoenix.test", ["mine"], "TXT")], ZONE, 5)
    expect = _dns.normalize_expect([{"name": "_active.phoenix.test", "type": "TXT", "values": ["region=east epoch=1"]}],
                                   ZONE)
    with pytest.raises(_dns.ConflictError) as info:
        _dns.switch(provider, mine, expect)
    assert info.value.details["current"][0]["values"] == ['"theirs"']
    assert info.value.details["batches"][0]["status"] == "conflict"


def test_own_update_encoder_is_a_valid_signed_rfc2136_message() -> None:
    """dnspython parses the hand-built UPDATE, verifies its TSIG, and finds the same sections it would build."""
    import base64

    import dns.message
    import dns.name
    import dns.rdataclass
    import dns.rdatatype
    import dns.tsig
    import dns.update
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns_rfc2136 as rfc

    secret = base64.b64encode(b"k" * 32).decode()
    key_name = dns.name.from_text("cloudphoenix-lab")
    key = dns.tsig.Key(key_name, secret, "hmac-sha512")
    expect = {("_active.phoenix.test.", "TXT"): rec("_active.phoenix.test.", ['"region=east epoch=1"'], "TXT"),
              ("new.phoenix.test.", "A"): None}
    changes = [
        {"key": ("_active.phoenix.test.", "TXT"), "before": None,
         "after": rec("_active.phoenix.test.", ['"region=west epoch=2"'], "TXT")},
        {"key": ("api.phoenix.test.", "A"), "before": None,
         "after": rec("api.phoenix.test.", ["10.0.0.1", "10.0.0.2"])},
        {"key": ("db.phoenix.test.", "AAAA"), "before": None, "after": None},
        {"key": ("phoenix.test.", "MX"), "before": None,
         "after": rec("phoenix.test.", ["10 mail.phoenix.test."], "MX")},
    ]
    wire = rfc.encode_update("phoenix.test.", changes, expect, 4242)
    signed, mac = rfc.sign_update(wire, key_name, key)
    parsed = dns.message.from_wire(signed, keyring={key_name: key})  # raises if the TSIG does not verify
    assert parsed.id == 4242 and parsed.had_tsig and parsed.mac == mac
    assert isinstance(parsed, dns.update.UpdateMessage)

    reference = dns.update.UpdateMessage("phoenix.test.")
    reference.present("_active.phoenix.test.", dns.rdataset.from_text("IN", "TXT", 0, '"region=east epoch=1"'))
    reference.absent("new.phoenix.test.", "A")
    reference.replace("_active.phoenix.test.", 5, "TXT", '"region=west epoch=2"')
    reference.replace("api.phoenix.test.", 5, "A", "10.0.0.1", "10.0.0.2")
    reference.delete("db.phoenix.test.", "AAAA")
    reference.replace("phoenix.test.", 5, "MX", "10 mail.phoenix.test.")
    reference = dns.message.from_wire(reference.to_wire())  # both through the same parser
    assert parsed.zone == reference.zone
    assert parsed.prerequisite == reference.prerequisite
    assert parsed.update == reference.update
    assert [rrset.ttl for rrset in parsed.update] == [rrset.ttl for rrset in reference.update]
    assert len(signed) < len(reference.to_wire()) + 200  # names compressed like dnspython does
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(signed, keyring={key_name: dns.tsig.Key(key_name, base64.b64encode(b"x" * 32).decode(),
                                                                       "hmac-sha512")})


# --------------------------------------------------------------------------- require: records the call does not change

ACTIVE_KEY = ("_active.phoenix.test.", "TXT")


class GuardedProvider(FakeProvider):
    """FakeProvider that takes `require` like the real providers and checks it the way a server would."""

    def apply(self, batch, expect, require=None):
        self.sent.append((batch, expect, require))
        for key, wanted in {**expect, **(require or {})}.items():
            if not _dns.same(self.data.get(key), wanted, compare_ttl=False):
                raise _dns.ConflictError("prerequisite not met (NXRRSET)")
        for change in batch:
            self.data[change["key"]] = change["after"]
        return {}


def _claim_data(value: str = "region=west epoch=2 run=a") -> dict:
    return {ACTIVE_KEY: rec(ACTIVE_KEY[0], [f'"{value}"'], rtype="TXT"),
            ("api.phoenix.test.", "A"): rec("api.phoenix.test.", ["127.0.10.1"])}


def _require(value: str = "region=west epoch=2 run=a") -> dict:
    return _dns.normalize_require([{"name": "_active.phoenix.test", "type": "TXT", "values": [value]}], ZONE)


def test_require_is_checked_on_every_call_and_sent_with_the_change() -> None:
    provider = GuardedProvider(_claim_data())
    switch_west = _dns.normalize_records([rec("api.phoenix.test", ["127.0.20.1"])], ZONE, 5)
    with pytest.raises(_dns.RequirementError, match='is "region=west epoch=2 run=a" ttl=5, required '
                                                    '"region=west epoch=3 run=b"'):
        _dns.switch(provider, switch_west, require=_require("region=west epoch=3 run=b"))
    # also when nothing would change: no "already applied" for a lost premise
    as_is = _dns.normalize_records([rec("api.phoenix.test", ["127.0.10.1"])], ZONE, 5)
    with pytest.raises(_dns.RequirementError):
        _dns.switch(provider, as_is, require=_require("region=west epoch=3 run=b"))
    assert provider.sent == []
    planned = _dns.switch(provider, switch_west, require=_require(), check_mode=True)
    assert planned["requirement"] == "held" and planned["changed"] and provider.sent == []
    done = _dns.switch(provider, switch_west, require=_require())
    assert done["requirement"] == "held" and done["cas"] is None
    [(_batch, expect, require)] = provider.sent
    assert expect == {} and require == _require()
    again = _dns.switch(provider, switch_west, require=_require())
    assert not again["changed"] and again["requirement"] == "held" and len(provider.sent) == 1


def test_a_server_refusal_is_put_on_the_record_that_moved() -> None:
    class Raced(GuardedProvider):
        def __init__(self, data: dict, moves: dict) -> None:
            super().__init__(data)
            self.moves = moves

        def apply(self, batch, expect, require=None):
            self.data.update(self.moves)  # another writer, between our read and our write
            return super().apply(batch, expect, require)

    switch_west = _dns.normalize_records([rec("api.phoenix.test", ["127.0.20.1"])], ZONE, 5)
    taken = Raced(_claim_data(), {ACTIVE_KEY: rec(ACTIVE_KEY[0], ['"region=west epoch=3 run=b"'], rtype="TXT")})
    with pytest.raises(_dns.RequirementError, match="required records changed after they were read") as info:
        _dns.switch(taken, switch_west, require=_require())
    assert info.value.details["batches"][0]["status"] == "requirement_failed"
    assert taken.data[("api.phoenix.test.", "A")]["values"] == ["127.0.10.1"]
    # expect and require in one change: the record that moved is an expected one -> a plain conflict
    cas = Raced(_claim_data(), {("api.phoenix.test.", "A"): rec("api.phoenix.test.", ["127.0.30.1"])})
    expect = _dns.normalize_expect([rec("api.phoenix.test", ["127.0.10.1"], ttl=None)], ZONE)
    with pytest.raises(_dns.ConflictError) as conflict:
        _dns.switch(cas, switch_west, expect=expect, require=_require())
    assert not isinstance(conflict.value, _dns.RequirementError)


@pytest.mark.parametrize(("records", "expect", "require", "message"), [
    ([rec("api.phoenix.test", ["127.0.20.1"])], [], [rec("api.phoenix.test", ["127.0.10.1"])],
     "require: api.phoenix.test. A is also in records"),
    ([rec("api.phoenix.test", ["127.0.20.1"])], [rec("_active.phoenix.test", ["x"], "TXT")], [],
     "expect: _active.phoenix.test. TXT is not in records"),
])
def test_guards_are_not_mixed_up(records: list, expect: list, require: list, message: str) -> None:
    provider = GuardedProvider(_claim_data())
    with pytest.raises(_dns.ValidationError, match=message):
        _dns.switch(provider, _dns.normalize_records(records, ZONE, 5), expect=_dns.normalize_expect(expect, ZONE),
                    require=_dns.normalize_require(require, ZONE))
    assert provider.sent == []


def test_require_needs_values_and_compares_them_as_an_exact_set() -> None:
    with pytest.raises(_dns.ValidationError, match=r"require\[0\]: values must list at least one value"):
        _dns.normalize_require([{"name": "_active.phoenix.test", "type": "TXT", "values": []}], ZONE)
    wanted = _dns.normalize_require([{"name": "x.phoenix.test", "type": "A", "values": ["10.0.0.2", "10.0.0.1"]}],
                                    ZONE)[("x.phoenix.test.", "A")]
    assert wanted["ttl"] is None and wanted["values"] == ["10.0.0.1", "10.0.0.2"]
    assert _dns.same(rec("x.phoenix.test.", ["10.0.0.1", "10.0.0.2"], ttl=60), wanted)
    assert not _dns.same(rec("x.phoenix.test.", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]), wanted)
    assert not _dns.same(None, wanted)


def test_rfc2136_require_becomes_rrset_exists_prerequisites_in_the_same_update() -> None:
    import dns.message
    import dns.rdataset
    import dns.update
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns_rfc2136 as rfc

    changes = [{"key": ("api.phoenix.test.", "A"), "before": None, "after": rec("api.phoenix.test.", ["127.0.20.1"])}]
    require = {ACTIVE_KEY: rec(ACTIVE_KEY[0], ['"region=west epoch=2 run=a"'], "TXT", ttl=None),
               ("db.phoenix.test.", "A"): rec("db.phoenix.test.", ["10.0.0.1", "10.0.0.2"], ttl=None)}
    expect = {("api.phoenix.test.", "A"): rec("api.phoenix.test.", ["127.0.10.1"], ttl=None)}
    parsed = dns.message.from_wire(rfc.encode_update("phoenix.test.", changes, expect, 7, require=require))
    reference = dns.update.UpdateMessage("phoenix.test.", id=7)
    reference.present("api.phoenix.test.", dns.rdataset.from_text("IN", "A", 0, "127.0.10.1"))
    reference.present("_active.phoenix.test.", dns.rdataset.from_text("IN", "TXT", 0, '"region=west epoch=2 run=a"'))
    reference.present("db.phoenix.test.", dns.rdataset.from_text("IN", "A", 0, "10.0.0.1", "10.0.0.2"))
    reference.replace("api.phoenix.test.", 5, "A", "127.0.20.1")
    reference = dns.message.from_wire(reference.to_wire())
    assert parsed.prerequisite == reference.prerequisite
    assert parsed.update == reference.update
    # without require the message is what it was
    assert rfc.encode_update("phoenix.test.", changes, expect, 7) == rfc.encode_update(
        "phoenix.test.", changes, expect, 7, require={})


def test_route53_require_heads_every_batch_and_counts_against_the_limits() -> None:
    provider, _batches = _route53_plan(1, existing=False)  # a provider with a plan method and _raw
    provider._raw[ACTIVE_KEY] = {"Name": "_active.phoenix.test.", "Type": "TXT", "TTL": 5,
                                 "ResourceRecords": [{"Value": '"region=west epoch=2 run=a"'}]}
    require = _require()
    changes = [{"key": (f"h{i}.phoenix.test.", "A"), "before": None, "after": rec(f"h{i}.phoenix.test.", ["10.0.0.1"])}
               for i in range(1000)]
    # 1000 CREATEs fit one batch alone; with the guard (2 elements) they do not
    with pytest.raises(_dns.ValidationError, match="1002 ResourceRecord elements of 1000"):
        provider.plan_batches(changes, {}, False, require=require)
    batches = provider.plan_batches(changes, {}, True, require=require)
    assert [len(b) for b in batches] == [998, 2]
    guard = [("DELETE", "_active.phoenix.test", [{"Value": '"region=west epoch=2 run=a"'}], 5),
             ("CREATE", "_active.phoenix.test", [{"Value": '"region=west epoch=2 run=a"'}], 5)]
    for actions in provider._batches:
        assert [(a["Action"], a["ResourceRecordSet"]["Name"], a["ResourceRecordSet"]["ResourceRecords"],
                 a["ResourceRecordSet"]["TTL"]) for a in actions[:2]] == guard
        assert all(a["Action"] == "CREATE" and a["ResourceRecordSet"]["Name"].startswith("h") for a in actions[2:])

"""Pure helpers of the PostgreSQL module_utils: LSNs, SCRAM verifiers, conninfo, passfiles, settings."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg import (
    PgError,
    build_conninfo,
    describe_connect_error,
    int_to_lsn,
    lsn_diff,
    lsn_to_int,
    parse_conninfo,
    passfile_line,
    scram_matches,
    scram_verifier,
)
from ansible_collections.cloudphoenix.stack.plugins.module_utils._pg_replication import (
    _conninfo_matches,
    _desired_primary_settings,
    _hba_missing,
    _sync_names_value,
    _validate_hba_network,
    _validate_slot,
)


def test_lsn_arithmetic_crosses_the_32_bit_boundary():
    assert lsn_to_int("1/0") == 1 << 32
    assert int_to_lsn(lsn_to_int("16/B374D848")) == "16/B374D848"
    assert lsn_diff("1/10", "0/FFFFFFF0") == 0x20
    assert lsn_diff("0/10", "0/20") == 0  # never negative
    assert lsn_diff(None, "0/1") is None


def test_scram_verifier_matches_the_rfc_5802_construction():
    salt = b"0123456789abcdef"
    verifier = scram_verifier("s3cret", salt=salt, iterations=4096)
    salted = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, 4096)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    assert verifier.startswith("SCRAM-SHA-256$4096:" + base64.b64encode(salt).decode() + "$")
    assert verifier.split("$")[2].split(":")[0] == base64.b64encode(stored).decode()
    assert scram_matches(verifier, "s3cret")
    assert not scram_matches(verifier, "s3cret ")
    assert not scram_matches("md5abcdef", "s3cret")
    assert not scram_matches(None, "s3cret")
    assert scram_verifier("x") != scram_verifier("x")  # fresh salt each time


def test_conninfo_quotes_and_round_trips():
    text = build_conninfo({"host": "10.0.0.1", "port": 5432, "user": "rep", "passfile": "/a b/it's",
                           "application_name": None})
    assert text == "host=10.0.0.1 port=5432 user=rep passfile='/a b/it\\'s'"
    assert parse_conninfo(text)["passfile"] == "/a b/it's"
    assert _conninfo_matches(text + " sslmode=prefer", text)
    assert not _conninfo_matches(text.replace("5432", "5433"), text)


def test_passfile_line_escapes_separators():
    assert passfile_line("h", 5432, "u:x", "p\\w:d") == "h:5432:*:u\\:x:p\\\\w\\:d\n"


def test_connect_errors_are_classified_without_the_password():
    auth = describe_connect_error(Exception('FATAL:  password authentication failed for user "r"'), "primary h:1", "r")
    assert auth.startswith("authentication failed for user 'r' at primary h:1")
    down = describe_connect_error(Exception("Connection refused\n\tIs the server running"), "primary h:1", "r")
    assert down == "primary h:1 is unreachable: Connection refused"


@pytest.mark.parametrize("name", ["West", "a-b", "", "x" * 64])
def test_invalid_slot_names_are_refused(name):
    with pytest.raises(PgError, match="not a valid slot name"):
        _validate_slot(name, "slot_name")


def test_hba_networks_and_lines():
    _validate_hba_network("127.0.0.0/8")
    _validate_hba_network("samenet")
    with pytest.raises(PgError, match="not a CIDR network"):
        _validate_hba_network("10.0.0.0/33")
    hba = "local all all trust\nhost  replication  replicator  127.0.0.0/8  scram-sha-256 # ours\n"
    wanted = ["host replication replicator 127.0.0.0/8 scram-sha-256",
              "host replication replicator 10.0.0.0/8 scram-sha-256"]
    assert _hba_missing(hba, wanted) == wanted[1:]


def settings(**configured):
    base = {"wal_level": "replica", "max_wal_senders": "10", "max_replication_slots": "10", "data_checksums": "off",
            "wal_log_hints": "on", "hot_standby": "on", "synchronous_standby_names": "",
            "default_transaction_read_only": "off"}
    base.update(configured)
    return {name: {"configured": value, "setting": value} for name, value in base.items()}


def test_desired_primary_settings_only_lists_what_must_change():
    assert _desired_primary_settings(settings(), {"standby_slots": ["west"]}) == {}
    assert _desired_primary_settings(settings(wal_level="minimal", wal_log_hints="off"), {}) == {
        "wal_level": "replica", "wal_log_hints": "on"}
    # data checksums make wal_log_hints unnecessary for pg_rewind
    assert _desired_primary_settings(settings(wal_log_hints="off", data_checksums="on"), {}) == {}
    assert _desired_primary_settings(settings(), {"mode": "sync", "standby_slots": ["west"]}) == {
        "synchronous_standby_names": 'FIRST 1 ("west")'}
    assert _desired_primary_settings(settings(default_transaction_read_only="on"), {}) == {
        "default_transaction_read_only": "off"}
    assert _desired_primary_settings(settings(max_wal_senders="20"), {"standby_slots": ["a"] * 12}) == {
        "max_replication_slots": "14"}


def test_sync_names_value():
    assert _sync_names_value("async", ["west"]) == ""
    assert _sync_names_value("sync", ["west", 'we"ird']) == 'FIRST 1 ("west", "we""ird")'

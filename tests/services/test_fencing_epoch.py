"""The write lease and the fencing record's epoch, against a real BIND9 (TSIG updates).

A stale answer (a lagging secondary DNS server, a late response) carries a lower epoch than one the
worker already saw: it must neither renew nor revoke. A malformed record never renews the lease.
"""

from __future__ import annotations

import pytest
from cloudphoenix_services import service_a
from cloudphoenix_services.core.fencing import Fence

from tests.support.bind import set_active
from tests.support.pg import wait_until

ORDER = {"customer_id": "cust-e", "currency": "EUR", "items": [{"sku": "A-1", "quantity": 1, "unit_price_cents": 100}]}


def fence_settings(make_settings, bind_server, lease: str):
    return make_settings(
        "service_a",
        region="west",
        fencing_enabled="true",
        fencing_dns_server=bind_server.host,
        fencing_dns_port=str(bind_server.port),
        fencing_record="_active.phoenix.test",
        fencing_lease_seconds=lease,
    )


@pytest.fixture
def fence(bind_server, make_settings, monkeypatch) -> Fence:
    """A fence the test drives itself: refresh() asks the real BIND, no background refresher races it."""
    fence = Fence(fence_settings(make_settings, bind_server, lease="30"))
    monkeypatch.setattr(fence, "start", lambda: None)
    return fence


def test_a_lower_epoch_never_re_grants_the_lease(bind_server, fence):
    set_active(bind_server, "region=west epoch=5 run=ctl/1/1")
    granted = fence.refresh()
    assert (granted.active_region, granted.epoch, granted.last_error) == ("west", 5, None)
    assert fence.writes_allowed() == (True, "lease held", 0)

    set_active(bind_server, "region=east epoch=6")  # another region's newer claim revokes at once
    revoked = fence.refresh()
    assert (revoked.active_region, revoked.epoch, revoked.confirmed_at) == ("east", 6, None)

    set_active(bind_server, "region=west epoch=4 run=ctl/1/1")  # a stale answer naming this region
    stale = fence.refresh()
    assert (stale.active_region, stale.epoch, stale.confirmed_at) == ("east", 6, None)
    assert stale.last_error == "stale answer ignored: region west at epoch 4 < epoch 6 already seen"
    allowed, reason, _retry = fence.writes_allowed()
    assert not allowed and reason == "region east is active (epoch 6), not west"

    set_active(bind_server, "region=west epoch=7 run=ctl/2/2")  # a real new claim is taken
    again = fence.refresh()
    assert (again.active_region, again.epoch, again.last_error) == ("west", 7, None)
    assert fence.writes_allowed()[0] is True


def test_a_lower_epoch_naming_another_region_does_not_revoke_nor_renew(bind_server, fence):
    set_active(bind_server, "region=west epoch=5")
    held = fence.refresh()
    set_active(bind_server, "region=east epoch=4")
    stale = fence.refresh()
    assert (stale.active_region, stale.epoch, stale.confirmed_at) == ("west", 5, held.confirmed_at)
    assert "epoch 4 < epoch 5" in stale.last_error
    assert fence.writes_allowed()[0] is True

    set_active(bind_server, "region=east epoch=5")  # same epoch, another region: revokes (>= the highest seen)
    assert fence.refresh().confirmed_at is None
    assert fence.writes_allowed()[0] is False


@pytest.mark.parametrize("texts,why", [
    (["region=west epoch=x"], "epoch 'x' is not a whole number >= 0"),
    (["region=west epoch=-6"], "epoch '-6' is not a whole number >= 0"),
    (["region=west"], "no epoch= word"),
    (["epoch=9"], "no region= word"),
    (["region=west epoch=9 epoch=10"], "'epoch' appears twice"),
    (["region=west epoch=9", "region=west epoch=10"], "2 TXT records, not one"),
])
def test_a_malformed_record_never_renews_the_lease(bind_server, fence, texts, why):
    set_active(bind_server, "region=west epoch=5")
    held = fence.refresh()
    assert held.confirmed_at is not None
    set_active(bind_server, *texts)
    for _ in range(2):
        bad = fence.refresh()
        assert (bad.active_region, bad.epoch, bad.confirmed_at) == ("west", 5, held.confirmed_at)
        assert bad.last_error.startswith("malformed fencing record _active.phoenix.test.: ")
        assert why in bad.last_error


def test_the_worker_refuses_writes_on_a_stale_or_malformed_record(bind_server, make_settings, clean_db):
    """The app with its real background refresher (lease 0.6 s, re-read every 0.2 s)."""
    app = service_a.create_app(fence_settings(make_settings, bind_server, lease="0.6"))
    client = app.test_client()
    fence = app.extensions["cloudphoenix"].fence
    try:
        set_active(bind_server, "region=west epoch=5")
        wait_until(lambda: client.post("/orders", json=ORDER).status_code == 201, timeout=10, message="west granted")
        set_active(bind_server, "region=east epoch=6")
        wait_until(lambda: client.post("/orders", json=ORDER).status_code == 503, timeout=10, message="west revoked")

        set_active(bind_server, "region=west epoch=4")
        assert fence.refresh().last_error.startswith("stale answer ignored")  # this worker has read it
        refused = client.post("/orders", json=ORDER)
        assert refused.status_code == 503
        assert "region east is active (epoch 6)" in refused.get_json()["detail"]

        set_active(bind_server, "region=west epoch=7")
        wait_until(lambda: client.post("/orders", json=ORDER).status_code == 201, timeout=10, message="west again")
        set_active(bind_server, "region=west epoch=seven")

        def lease_ran_out() -> bool:
            response = client.post("/orders", json=ORDER)
            return response.status_code == 503 and "lease not renewed" in response.get_json()["detail"]

        wait_until(lease_ran_out, timeout=10, message="the lease runs out on a malformed record")
        detail = client.post("/orders", json=ORDER).get_json()["detail"]
        assert "malformed fencing record _active.phoenix.test.: epoch 'seven'" in detail
        assert fence.state.epoch == 7 and fence.state.active_region == "west"
    finally:
        app.extensions["cloudphoenix"].close()

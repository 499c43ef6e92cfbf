"""Teardown of a dev stack: no override needed, but a database protected by hand is still refused."""

from __future__ import annotations

import pytest

from tests.support.ansible import run_playbook

from .conftest import PROVISION, TEARDOWN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def play(playbook, inventory, **extra_vars):
    return run_playbook(playbook, inventory=inventory.write(), extra_vars=extra_vars or None, timeout=900,
                        env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})


def test_dev_teardown_rechecks_live_deletion_protection(inventory, moto):
    run = play(PROVISION, inventory)
    assert run.rc == 0, run.stdout[-6000:]
    east = moto.client("rds", "us-east-1")
    assert east.describe_db_instances(DBInstanceIdentifier="cloudphoenix-dev-db")["DBInstances"][0][
        "DeletionProtection"] is False

    # Someone turns deletion protection on by hand: the config says "not protected", the live check refuses.
    east.modify_db_instance(DBInstanceIdentifier="cloudphoenix-dev-db", DeletionProtection=True, ApplyImmediately=True)
    refused = play(TEARDOWN, inventory)
    assert refused.rc != 0
    assert ("region east: database cloudphoenix-dev-db has deletion protection on; refusing to delete it "
            "(set aws_infra_allow_protected_delete=true to delete it)") in refused.stdout, refused.stdout[-4000:]
    assert refused.total("changed") == 0
    assert len(moto.client("route53").list_health_checks()["HealthChecks"]) == 2
    assert moto.client("rds", "us-west-2").describe_db_instances()["DBInstances"] != []

    # Protection off again: a dev stack goes without any override.
    east.modify_db_instance(DBInstanceIdentifier="cloudphoenix-dev-db", DeletionProtection=False, ApplyImmediately=True)
    # moto 5.2 cannot delete a cross-region replica (500, see test_provision.py): mark it standalone in moto.
    moto.client("rds", "us-west-2").promote_read_replica(DBInstanceIdentifier="cloudphoenix-dev-db-west")
    gone = play(TEARDOWN, inventory)
    assert gone.rc == 0, gone.stdout[-6000:]
    for region in ("us-east-1", "us-west-2"):
        assert moto.client("rds", region).describe_db_instances()["DBInstances"] == []
        assert [v for v in moto.client("ec2", region).describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
    # dev: no final snapshot
    assert [s for s in east.describe_db_snapshots()["DBSnapshots"] if s["SnapshotType"] == "manual"] == []
    assert moto.client("s3").list_buckets()["Buckets"] == []

    again = play(TEARDOWN, inventory)
    assert again.rc == 0, again.stdout[-6000:]
    assert again.total("changed") == 0, again.stdout[-6000:]

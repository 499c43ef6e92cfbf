"""tasks/platform_rds.yml against moto in server mode: fence (look), promote the DR read replica, stop the old primary.

The primary (us-east-1) and its cross-region read replica (us-west-2) are made with boto3, the way
aws_infra makes them (aws_infra's own moto tests cover that role). Most tests use moto patched to do
what AWS documents and stock moto 5.2 does not (moto_rds_like_aws.py): report ``StatusInfos`` for a
read replica (amazon.aws.rds_instance promotes only when it is there) and detach the replica on
``PromoteReadReplica``. One test runs stock moto, where the promotion never takes, and shows the run
fails instead of reporting success.

What moto cannot show (so these tests do not): the minutes a real promotion takes (``modifying``,
``rebooting``), replication itself and the lag/lost writes at promotion (the RDS API reports no WAL
position; ReplicaLag is a CloudWatch metric), that a promoted replica really accepts writes, and AWS's
refusal to stop an instance that still has read replicas (moto stops it anyway - the tasks only stop
the old primary after the promotion, when it has none). A lost region is imitated by an endpoint on
a closed port for the old region's API.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.failover_platforms.conftest import PROMOTE_SECONDS, run_steps
from tests.support.moto import MOTO_ENV
from tests.support.net import free_port

PRIMARY, REPLICA = "cp-prod-db", "cp-prod-db-west"


def subnet_group(moto, region: str) -> str:
    """A DB subnet group in two AZs (every real instance has one; amazon.aws.rds_instance reads it)."""
    ec2 = moto.client("ec2", region)
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{i}.0/24", AvailabilityZone=f"{region}{az}")
               ["Subnet"]["SubnetId"] for i, az in enumerate("ab", start=1)]
    moto.client("rds", region).create_db_subnet_group(
        DBSubnetGroupName="cp-prod-db", DBSubnetGroupDescription="failover test", SubnetIds=subnets)
    return "cp-prod-db"


def make_pair(moto) -> dict:
    east, west = moto.client("rds", "us-east-1"), moto.client("rds", "us-west-2")
    # same name in both regions, as aws_infra does (moto resolves a cross-region replica's group in the source region)
    group = subnet_group(moto, "us-east-1")
    subnet_group(moto, "us-west-2")
    primary = east.create_db_instance(
        DBInstanceIdentifier=PRIMARY, DBSubnetGroupName=group, Engine="postgres", EngineVersion="15.7",
        DBInstanceClass="db.t3.micro",
        MasterUsername="phoenix", MasterUserPassword="not-a-real-password-1", AllocatedStorage=20,
    )["DBInstance"]
    replica = west.create_db_instance_read_replica(
        DBInstanceIdentifier=REPLICA, SourceDBInstanceIdentifier=primary["DBInstanceArn"],
        DBInstanceClass="db.t3.micro", DBSubnetGroupName=group,
    )["DBInstance"]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == primary["DBInstanceArn"]
    return {"primary": primary, "replica": replica}


def describe(moto, region: str, identifier: str) -> dict:
    return moto.client("rds", region).describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]


def play_vars(moto, **overrides) -> dict:
    return {
        "cloudphoenix_primary_region": "east",
        "failover_target_region": "west",
        "failover_rds_endpoint_url": moto.endpoint_url,
        "failover_rds_instances": {"east": {"identifier": PRIMARY, "aws_region": "us-east-1"},
                                   "west": {"identifier": REPLICA, "aws_region": "us-west-2"}},
        "failover_rds_poll_interval": 1,
        "failover_rds_promote_timeout": 30,
        "failover_rds_api_timeout": 15,
        **overrides,
    }


STEPS = [("platform_rds", {"failover_rds_step": "fence"}), ("platform_rds", {"failover_rds_step": "promote"})]


def test_promote_detaches_the_replica_stops_the_old_primary_and_rerun_changes_nothing(moto_rds, tmp_path: Path):
    pair = make_pair(moto_rds)
    first = run_steps(tmp_path, STEPS, play_vars(moto_rds), "-vv")
    assert first.run.rc == 0, first.output[-4000:]

    replica = describe(moto_rds, "us-west-2", REPLICA)
    assert not replica.get("ReadReplicaSourceDBInstanceIdentifier"), replica
    assert replica["DBInstanceStatus"] == "available"
    primary = describe(moto_rds, "us-east-1", PRIMARY)
    assert primary.get("ReadReplicaDBInstanceIdentifiers", []) == []
    assert primary["DBInstanceStatus"] == "stopped"

    rds = first.facts["failover_rds"]
    assert rds["promoted"] is True
    assert rds["endpoint"] == pair["replica"]["Endpoint"]["Address"]
    assert rds["was_replica_of"] == pair["primary"]["DBInstanceArn"]
    # the patched moto is `modifying` for PROMOTE_SECONDS: the run waited for it, and measured it
    assert isinstance(rds["seconds_to_writable"], float) and rds["seconds_to_writable"] >= PROMOTE_SECONDS
    assert first.facts["failover_promote"]["changed"] is True
    assert first.facts["failover_promote"]["seconds_to_writable"] == rds["seconds_to_writable"]
    assert "available" in first.facts["failover_fence_db"]["method"]
    assert "old primary: stopping" in first.facts["failover_fence_db"]["method"]
    # no AWS secret (nor the master password) in the -vv output
    for secret in (MOTO_ENV["AWS_SECRET_ACCESS_KEY"], "not-a-real-password-1"):
        assert secret not in first.output

    second = run_steps(tmp_path, STEPS, play_vars(moto_rds))
    assert second.run.rc == 0, second.output[-4000:]
    assert second.run.total("changed") == 0, second.output[-4000:]
    assert second.facts["failover_rds"]["promoted"] is False
    assert "already standalone" in second.facts["failover_promote"]["msg"]
    assert second.facts["failover_rds"]["old_primary_stop"] == "already stopped"


def test_rerun_during_a_promotion_under_way_waits_for_it_instead_of_promoting_again(moto_rds, tmp_path: Path):
    """An interrupted run had already called PromoteReadReplica: the instance is `modifying`."""
    make_pair(moto_rds)
    moto_rds.client("rds", "us-west-2").promote_read_replica(DBInstanceIdentifier=REPLICA)
    assert describe(moto_rds, "us-west-2", REPLICA)["DBInstanceStatus"] == "modifying"
    run = run_steps(tmp_path, [STEPS[1]], play_vars(moto_rds))
    assert run.run.rc == 0, run.output[-4000:]
    assert "(a promotion already under way): waited for it" in run.facts["failover_promote"]["msg"]
    assert run.facts["failover_rds"]["promoted"] is False
    assert not describe(moto_rds, "us-west-2", REPLICA).get("ReadReplicaSourceDBInstanceIdentifier")
    assert describe(moto_rds, "us-east-1", PRIMARY)["DBInstanceStatus"] == "stopped"


def test_check_mode_reports_the_promotion_and_changes_nothing(moto_rds, tmp_path: Path):
    make_pair(moto_rds)
    run = run_steps(tmp_path, STEPS, play_vars(moto_rds), "--check", "--diff")
    assert run.run.rc == 0, run.output[-4000:]
    assert f"would promote RDS read replica {REPLICA} in us-west-2" in run.facts["failover_promote"]["msg"]
    assert run.facts["failover_rds"]["seconds_to_writable"] is None
    replica = describe(moto_rds, "us-west-2", REPLICA)
    assert replica.get("ReadReplicaSourceDBInstanceIdentifier"), "check mode promoted the replica"
    assert describe(moto_rds, "us-east-1", PRIMARY)["DBInstanceStatus"] == "available"


@pytest.mark.parametrize("instances", [
    {"east": {"identifier": PRIMARY, "aws_region": "us-east-1"},
     "west": {"identifier": "cp-prod-db-nope", "aws_region": "us-west-2"}},
    {"east": {"identifier": PRIMARY, "aws_region": "us-east-1"}},
    {"east": {"identifier": REPLICA, "aws_region": "us-west-2"},
     "west": {"identifier": REPLICA, "aws_region": "us-west-2"}},
], ids=["replica-not-found", "no-instance-for-region", "same-instance-for-both"])
def test_missing_replica_fails_clearly_and_changes_nothing(moto_rds, tmp_path: Path, instances):
    make_pair(moto_rds)
    run = run_steps(tmp_path, STEPS, play_vars(moto_rds, failover_rds_instances=instances))
    assert run.run.rc != 0
    assert "Nothing was changed." in run.run.stdout, run.output[-3000:]
    assert ("no RDS instance cp-prod-db-nope in us-west-2" in run.run.stdout
            or "failover_rds_instances has no instance for region west" in run.run.stdout
            or f"failover_rds_instances names the same instance {REPLICA} (us-west-2)" in run.run.stdout)
    assert run.run.total("changed") == 0
    assert describe(moto_rds, "us-west-2", REPLICA).get("ReadReplicaSourceDBInstanceIdentifier")
    assert describe(moto_rds, "us-east-1", PRIMARY)["DBInstanceStatus"] == "available"


def test_lost_old_region_is_recorded_and_the_promotion_still_happens(moto_rds, tmp_path: Path):
    """The old region's RDS API does not answer (a closed port stands in for it): fence recorded, no stop."""
    make_pair(moto_rds)
    dead = f"http://127.0.0.1:{free_port()}"
    instances = {"east": {"identifier": PRIMARY, "aws_region": "us-east-1", "endpoint_url": dead},
                 "west": {"identifier": REPLICA, "aws_region": "us-west-2"}}
    run = run_steps(tmp_path, STEPS, play_vars(moto_rds, failover_rds_instances=instances))
    assert run.run.rc == 0, run.output[-4000:]
    fence = run.facts["failover_fence_db"]["method"]
    assert "region API does not answer" in fence and "the claim and the services write lease fence it" in fence
    assert run.facts["failover_rds"]["old_primary_stop"] == "skipped: its region did not answer"
    assert not describe(moto_rds, "us-west-2", REPLICA).get("ReadReplicaSourceDBInstanceIdentifier")
    assert describe(moto_rds, "us-east-1", PRIMARY)["DBInstanceStatus"] == "available"


def test_stock_moto_promotion_never_takes_and_the_run_fails_instead_of_claiming_success(moto, tmp_path: Path):
    """Stock moto 5.2: no StatusInfos (rds_instance sees no replica) and the source stays set: must not pass."""
    make_pair(moto)
    run = run_steps(tmp_path, [STEPS[1]], play_vars(moto, failover_rds_promote_timeout=3))
    assert run.run.rc != 0
    assert f"RDS instance {REPLICA} (us-west-2) is not a standalone, available instance" in run.run.stdout, \
        run.output[-3000:]
    assert describe(moto, "us-east-1", PRIMARY)["DBInstanceStatus"] == "available", "old primary stopped anyway"

"""aws_infra against moto in server mode: provision both regions, re-run, check mode, outputs."""

from __future__ import annotations

import time

import pytest

from tests.support.ansible import run_playbook
from tests.support.moto import MOTO_ENV

from .conftest import DB_PASSWORD, PROVISION, outputs

pytestmark = pytest.mark.slow


def provision(inventory, *args, **extra_vars):
    return run_playbook(PROVISION, *args, inventory=inventory.write(), extra_vars=extra_vars or None)


def assert_ok(run):
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-3000:]


def test_provision_both_regions_then_idempotent(inventory, moto, tmp_path):
    out_file = tmp_path / "outputs.json"
    started = time.monotonic()
    first = provision(inventory, "-vv", aws_infra_outputs_file=str(out_file))
    first_seconds = time.monotonic() - started
    assert_ok(first)
    assert first.recap()["east"]["changed"] > 5
    assert first.recap()["west"]["changed"] > 5

    for name, region, octet in (("east", "us-east-1", 10), ("west", "us-west-2", 20)):
        ec2 = moto.client("ec2", region)
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [f"cloudphoenix-dev-{name}"]}])["Vpcs"]
        assert [vpc["CidrBlock"] for vpc in vpcs] == [f"10.{octet}.0.0/16"]
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}])["Subnets"]
        assert sorted((s["CidrBlock"], s["AvailabilityZone"]) for s in subnets) == sorted([
            (f"10.{octet}.0.0/24", f"{region}a"), (f"10.{octet}.10.0/24", f"{region}b"),
            (f"10.{octet}.1.0/24", f"{region}a"), (f"10.{octet}.2.0/24", f"{region}b")])
        groups = {g["GroupName"]: g for g in ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}])["SecurityGroups"]}
        lb, services, database = (groups[f"cloudphoenix-dev-{name}-{kind}"] for kind in ("lb", "services", "database"))
        # services <- load balancer only; database <- services only, on the database port only
        assert {(p["FromPort"], tuple(u["GroupId"] for u in p["UserIdGroupPairs"]), tuple(p["IpRanges"]))
                for p in services["IpPermissions"]} == {(8080, (lb["GroupId"],), ()), (8081, (lb["GroupId"],), ())}
        assert [(p["FromPort"], p["ToPort"], [u["GroupId"] for u in p["UserIdGroupPairs"]], p["IpRanges"])
                for p in database["IpPermissions"]] == [(5432, 5432, [services["GroupId"]], [])]
        assert database["IpPermissionsEgress"] == []

        s3 = moto.client("s3", region)
        bucket = f"cloudphoenix-dev-{name}-documents"
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
        lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert lifecycle[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90

    rds_east = moto.client("rds", "us-east-1").describe_db_instances(DBInstanceIdentifier="cloudphoenix-dev-db")
    primary = rds_east["DBInstances"][0]
    assert primary["Engine"] == "postgres"
    assert primary["EngineVersion"] == "15.7"
    assert primary["BackupRetentionPeriod"] == 7
    replica = moto.client("rds", "us-west-2").describe_db_instances(
        DBInstanceIdentifier="cloudphoenix-dev-db-west")["DBInstances"][0]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == primary["DBInstanceArn"]

    iam = moto.client("iam")
    role = iam.get_role(RoleName="cloudphoenix-dev-east-services")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert iam.list_access_keys  # roles only: no IAM user, no access key was created
    assert iam.list_users()["Users"] == []

    route53 = moto.client("route53")
    zones = route53.list_hosted_zones()["HostedZones"]
    assert [zone["Name"] for zone in zones] == ["phoenix.example.com."]
    checks = route53.list_health_checks()["HealthChecks"]
    assert sorted(c["HealthCheckConfig"]["IPAddress"] for c in checks) == ["127.0.10.1", "127.0.20.1"]

    # The outputs the failover runbook reads.
    stack = outputs(out_file)
    assert stack["zone"] == {"name": "phoenix.example.com", "id": zones[0]["Id"].split("/")[-1]}
    assert stack["primary_region"] == "east"
    assert stack["database"]["primary"]["identifier"] == "cloudphoenix-dev-db"
    assert stack["database"]["primary"]["endpoint"] == primary["Endpoint"]["Address"]
    assert [r["identifier"] for r in stack["database"]["replicas"]] == ["cloudphoenix-dev-db-west"]
    assert stack["database"]["replicas"][0]["source_identifier"] == primary["DBInstanceArn"]
    assert stack["regions"]["west"]["db"]["endpoint"] == replica["Endpoint"]["Address"]
    assert stack["regions"]["east"]["health_check_id"] in {c["Id"] for c in checks}

    # No secret in the output, even at -vv.
    for secret in (DB_PASSWORD, MOTO_ENV["AWS_SECRET_ACCESS_KEY"], MOTO_ENV["AWS_ACCESS_KEY_ID"]):
        assert secret not in first.stdout + first.stderr

    started = time.monotonic()
    second = provision(inventory, aws_infra_outputs_file=str(out_file))
    second_seconds = time.monotonic() - started
    assert_ok(second)
    assert second.total("changed") == 0, second.stdout[-6000:]

    started = time.monotonic()
    check = provision(inventory, "--check", "--diff", aws_infra_outputs_file=str(out_file))
    check_seconds = time.monotonic() - started
    assert_ok(check)
    assert check.total("changed") == 0, check.stdout[-6000:]
    print(f"\nprovision {first_seconds:.1f}s, re-run {second_seconds:.1f}s, check mode {check_seconds:.1f}s")

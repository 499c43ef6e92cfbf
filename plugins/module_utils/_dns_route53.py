# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route 53 through boto3: one ChangeResourceRecordSets batch per atomic change.

Compare-and-swap: every record named in `expect` is sent as a DELETE of the exact rrset
read a moment ago (TTL and values) followed by a CREATE, in the same batch; Route 53
rejects the whole batch (InvalidChangeBatch) if the DELETE no longer matches, so two
concurrent swaps cannot both land. Other records are UPSERTs (or CREATE / DELETE).

`require` (records the change must not touch, which must hold given values) is the same guard
without the swap: a DELETE of the exact rrset read followed by a CREATE of the identical rrset,
at the head of every batch (Route 53 applies a batch's changes in order, all or none). moto
cannot emulate this guard: it checks a DELETE against its journal of past writes instead of the
current record set, and refuses a CREATE identical to one in its journal while the record exists,
before applying the DELETE in front of it (see docs/modules/dns_records.md).

Limits (Route 53 API reference, ChangeResourceRecordSets): at most 1,000 ResourceRecord
elements and 32,000 characters of Value per request; UPSERT counts each twice.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
import traceback

from ansible_collections.cloudphoenix.stack.plugins.module_utils._dns import (
    ConflictError,
    DnsError,
    DnsProvider,
    TransientError,
    ValidationError,
    absolute_name,
    canonical_value,
    key_text,
)

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError:
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()

MAX_RECORD_ELEMENTS = 1000
MAX_VALUE_CHARS = 32000
PER_RECORD_READ_LIMIT = 20  # more keys than this: list the whole zone instead of one call per key

TRANSIENT_CODES = ("Throttling", "ThrottlingException", "PriorRequestNotComplete", "ServiceUnavailable",
                   "InternalFailure", "InternalError", "RequestTimeout", "RequestExpired")
CONFLICT_HINTS = ("not found", "do not match", "already exists", "but it was not found")


def _listing_order(key):
    """Where Route 53 lists a record: by name with the labels reversed (com.example.www), then by type."""
    return (key[0].rstrip(".").split(".")[::-1], key[1])


def _error_code(exc):
    return exc.response.get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""


class Route53Provider(DnsProvider):
    name = "route53"

    def __init__(self, zone=None, hosted_zone_id=None, endpoint_url=None, region=None, access_key=None,
                 secret_key=None, session_token=None, profile=None, client=None, query_timeout=5.0):
        self.zone = absolute_name(zone, what="zone") if zone else None
        self.zone_id = hosted_zone_id.split("/")[-1] if hosted_zone_id else None
        self._raw = {}
        self._batches = []
        self._plan_refs = []
        if client is None:
            try:
                session = boto3.session.Session(
                    aws_access_key_id=access_key, aws_secret_access_key=secret_key, aws_session_token=session_token,
                    profile_name=profile, region_name=region or None)
                config = botocore.config.Config(
                    retries={"max_attempts": 1, "mode": "standard"},  # our own jittered retries decide
                    connect_timeout=query_timeout, read_timeout=max(query_timeout, 10),
                    # every request is built here from records _dns has validated, and Route 53 checks them
                    # again; botocore's own check of 1,000 changes costs ~15 ms per batch
                    parameter_validation=False)
                client = session.client("route53", endpoint_url=endpoint_url, config=config,
                                        region_name=region or session.region_name or "us-east-1")
            except (botocore.exceptions.BotoCoreError, ValueError) as exc:
                raise ValidationError("cannot set up the Route 53 client: %s" % exc) from exc
        self.client = client

    # -- error mapping
    def _call(self, operation, **kwargs):
        try:
            return getattr(self.client, operation)(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code = _error_code(exc)
            message = exc.response.get("Error", {}).get("Message", str(exc))
            if code in TRANSIENT_CODES or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                raise TransientError("Route 53 %s: %s (%s)" % (operation, code, message), code=code) from exc
            if code == "InvalidChangeBatch" and any(hint in message for hint in CONFLICT_HINTS):
                raise ConflictError("compare-and-swap failed at Route 53, nothing changed: %s" % message,
                                    code=code) from exc
            if code in ("NoSuchHostedZone", "HostedZoneNotFound"):
                raise DnsError("hosted zone %s not found in Route 53: %s" % (self.zone_id or self.zone, message),
                               code=code) from exc
            raise DnsError("Route 53 %s failed: %s (%s)" % (operation, code, message), code=code) from exc
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError) as exc:
            raise TransientError("Route 53 %s: %s" % (operation, exc)) from None
        except botocore.exceptions.NoCredentialsError as exc:
            raise DnsError("Route 53 %s: no AWS credentials found (%s)" % (operation, exc)) from exc

    # -- interface
    def resolve_zone(self):
        if self.zone_id:
            zone = self._call("get_hosted_zone", Id=self.zone_id)["HostedZone"]
            name = absolute_name(zone["Name"], what="hosted zone name")
            if self.zone and self.zone != name:
                raise ValidationError("hosted_zone_id %s is zone %s, not %s" % (self.zone_id, name, self.zone))
            self.zone = name
            return
        found = self._call("list_hosted_zones_by_name", DNSName=self.zone, MaxItems="100")["HostedZones"]
        matches = [z for z in found if absolute_name(z["Name"]) == self.zone]
        if not matches:
            raise DnsError("zone %s is not a hosted zone in this Route 53 account" % self.zone, code="NoSuchHostedZone")
        if len(matches) > 1:
            raise ValidationError("%d hosted zones are named %s (public and private?): give hosted_zone_id (%s)"
                                  % (len(matches), self.zone, ", ".join(z["Id"].split("/")[-1] for z in matches)))
        self.zone_id = matches[0]["Id"].split("/")[-1]

    def _take(self, raw, wanted, found):
        name = absolute_name(raw["Name"].replace("\\052", "*"), what="Route 53 record name")
        key = (name, raw["Type"])
        if key not in wanted:
            return
        if "SetIdentifier" in raw or "AliasTarget" in raw:
            raise DnsError("%s is a routing-policy or alias record set; dns_records manages simple records only"
                           % key_text(key))
        values = sorted({canonical_value(raw["Type"], r["Value"], where="Route 53 value of %s" % key_text(key))
                         for r in raw.get("ResourceRecords", [])})
        self._raw[key] = raw
        found[key] = {"name": name, "type": raw["Type"], "ttl": raw.get("TTL"), "values": values}

    def read(self, keys):
        wanted = set(keys)
        found = {}
        if len(wanted) <= PER_RECORD_READ_LIMIT:
            for name, rtype in keys:
                page = self._call("list_resource_record_sets", HostedZoneId=self.zone_id,
                                  StartRecordName=name, StartRecordType=rtype, MaxItems="1")
                for raw in page["ResourceRecordSets"]:
                    self._take(raw, wanted, found)
        else:
            # List from the first record asked for (in Route 53's order: labels reversed, then type) and stop
            # once every record is found. Records not found there are absent, unless the order guessed here
            # differs from Route 53's: so the zone's head, up to where the first listing began, is listed too.
            first = min(wanted, key=_listing_order)
            began = None if "*" in first[0] else self._list(wanted, found, start=first)
            if len(found) < len(wanted) and began != "everything":
                self._list(wanted, found, stop_at=began)
        for key in keys:
            if key not in found:
                self._raw.pop(key, None)
        return {key: found.get(key) for key in keys}

    def _list(self, wanted, found, start=None, stop_at=None):
        """ListResourceRecordSets from `start` (or the zone's beginning) until every wanted record is found, the
        listing ends, or it reaches `stop_at` (a record's identity as listed). Returns the identity of the first
        record listed, "everything" when listing from the beginning, or None when nothing was listed."""
        kwargs = {"HostedZoneId": self.zone_id, "MaxItems": "300"}
        if start is not None:
            kwargs.update(StartRecordName=start[0], StartRecordType=start[1])
        first = "everything" if start is None else None
        while True:
            page = self._call("list_resource_record_sets", **kwargs)
            for raw in page["ResourceRecordSets"]:
                identity = (raw["Name"], raw["Type"], raw.get("SetIdentifier"))
                if identity == stop_at:
                    return first
                if first is None:
                    first = identity
                self._take(raw, wanted, found)
            if len(found) == len(wanted) or not page.get("IsTruncated"):
                return first
            kwargs["StartRecordName"] = page["NextRecordName"]
            kwargs["StartRecordType"] = page["NextRecordType"]

    def _record_set(self, rrset):
        return {"Name": rrset["name"].rstrip("."), "Type": rrset["type"], "TTL": rrset["ttl"],
                "ResourceRecords": [{"Value": v} for v in rrset["values"]]}

    def _units(self, changes, expect):
        """Changes as Route 53 actions, grouped in units that must stay in one batch."""
        units = []
        guarded = [c for c in changes if c["key"] in expect]
        for change in guarded + [c for c in changes if c["key"] not in expect]:
            key, before, after = change["key"], change["before"], change["after"]
            actions = []
            if before is not None and (key in expect or after is None):
                raw = dict(self._raw[key])  # the exact rrset read: Route 53 rejects a DELETE that differs
                raw["Name"] = raw["Name"].rstrip(".")
                actions.append({"Action": "DELETE", "ResourceRecordSet": raw})
            if after is not None:
                action = "CREATE" if before is None or key in expect else "UPSERT"
                actions.append({"Action": action, "ResourceRecordSet": self._record_set(after)})
            units.append((change, actions))
        return units

    @staticmethod
    def _cost(actions):
        elements = chars = 0
        for action in actions:
            factor = 2 if action["Action"] == "UPSERT" else 1
            records = action["ResourceRecordSet"].get("ResourceRecords", [])
            elements += factor * len(records)
            chars += factor * sum(len(r["Value"]) for r in records)
        return elements, chars

    def _guard_actions(self, require):
        """DELETE of the exact rrset read + CREATE of the identical rrset, per required record (not changed)."""
        actions = []
        for key in require or {}:
            raw = self._raw.get(key)
            if raw is None:  # switch() checked the read: only reached when a caller skips it
                raise DnsError("%s is required but was not read (or does not exist)" % key_text(key))
            exact = dict(raw)
            exact["Name"] = raw["Name"].rstrip(".")
            actions.append({"Action": "DELETE", "ResourceRecordSet": exact})
            actions.append({"Action": "CREATE", "ResourceRecordSet": dict(exact)})
        return actions

    def plan_batches(self, changes, expect, allow_split, require=None):
        units = self._units(changes, expect)
        guard = self._guard_actions(require)
        guard_cost = self._cost(guard)
        if guard_cost[0] > MAX_RECORD_ELEMENTS // 2 or guard_cost[1] > MAX_VALUE_CHARS // 2:
            raise ValidationError("the required records alone (%d ResourceRecord elements, %d value characters, "
                                  "sent twice in every batch) take more than half of a Route 53 batch: refused"
                                  % guard_cost)
        total = list(guard_cost)
        for _dummy, actions in units:
            elements, chars = self._cost(actions)
            total[0] += elements
            total[1] += chars
        if total[0] <= MAX_RECORD_ELEMENTS and total[1] <= MAX_VALUE_CHARS:
            self._batches = [guard + [a for _dummy, actions in units for a in actions]]
            self._plan_refs = [[c for c, _dummy in units]]
            return self._plan_refs
        if not allow_split:
            raise ValidationError(
                "the change is over Route 53's limits for one atomic batch (%d ResourceRecord elements of %d, "
                "%d value characters of %d; UPSERT counts twice): refused. Send fewer records, or set "
                "allow_split=true to apply it in several batches (not atomic as a whole)"
                % (total[0], MAX_RECORD_ELEMENTS, total[1], MAX_VALUE_CHARS))
        batches, self._batches = [], []
        current, current_actions, used = [], list(guard), list(guard_cost)  # the guard heads every batch
        for change, actions in units:
            elements, chars = self._cost(actions)
            if elements + guard_cost[0] > MAX_RECORD_ELEMENTS or chars + guard_cost[1] > MAX_VALUE_CHARS:
                raise ValidationError("%s alone is over Route 53's batch limits" % key_text(change["key"]))
            if current and (used[0] + elements > MAX_RECORD_ELEMENTS or used[1] + chars > MAX_VALUE_CHARS):
                batches.append(current)
                self._batches.append(current_actions)
                current, current_actions, used = [], list(guard), list(guard_cost)
            current.append(change)
            current_actions.extend(actions)
            used[0] += elements
            used[1] += chars
        batches.append(current)
        self._batches.append(current_actions)
        self._plan_refs = batches
        return batches

    def apply(self, batch, expect, require=None):
        index = next((i for i, planned in enumerate(self._planned_batches()) if planned is batch), None)
        actions = self._batches[index] if index is not None else self._guard_actions(require) + [
            a for _dummy, actions in self._units(batch, expect) for a in actions]
        started = time.monotonic()
        info = self._call("change_resource_record_sets", HostedZoneId=self.zone_id,
                          ChangeBatch={"Comment": "cloudphoenix.stack.dns_records", "Changes": actions})["ChangeInfo"]
        return {"change_id": info["Id"].split("/")[-1], "change_status": info["Status"], "actions": len(actions),
                "seconds": round(time.monotonic() - started, 4)}

    def _planned_batches(self):
        return self._plan_refs

    def wait_synced(self, applied, deadline):
        """GetChange until INSYNC: Route 53's own servers all serve the change."""
        for info in applied:
            change_id = info.get("change_id")
            delay = 0.2
            while change_id:
                status = self._call("get_change", Id=change_id)["ChangeInfo"]["Status"]
                info["change_status"] = status
                if status == "INSYNC":
                    break
                if time.monotonic() + delay > deadline:
                    raise DnsError("timed out waiting for Route 53 change %s to be INSYNC (still %s)"
                                   % (change_id, status), change_id=change_id)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

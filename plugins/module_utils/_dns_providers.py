# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared argument spec and provider construction for dns_records and dns_records_info.

The option documentation lives in plugins/doc_fragments/dns.py; keep the two in step.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns
from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns_rfc2136

TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha512", "hmac-sha384", "hmac-sha224")


def _route53():
    """Imported only for provider=route53: boto3 costs ~0.3 s of start-up an RFC 2136 run does not need."""
    from ansible_collections.cloudphoenix.stack.plugins.module_utils import _dns_route53

    return _dns_route53


RFC2136_ONLY = ("server", "key_name", "key_secret")
ROUTE53_ONLY = ("hosted_zone_id", "endpoint_url", "access_key", "secret_key", "session_token", "profile")


def provider_argument_spec():
    return dict(
        provider=dict(type="str", required=True, choices=["route53", "rfc2136"]),
        zone=dict(type="str"),
        hosted_zone_id=dict(type="str"),
        server=dict(type="str"),
        port=dict(type="int", default=53),
        key_name=dict(type="str"),
        key_secret=dict(type="str", no_log=True),
        key_algorithm=dict(type="str", default="hmac-sha256", choices=list(TSIG_ALGORITHMS)),
        endpoint_url=dict(type="str", aliases=["aws_endpoint_url"]),
        region=dict(type="str", aliases=["aws_region"]),
        access_key=dict(type="str", aliases=["aws_access_key_id", "aws_access_key"], no_log=False),
        secret_key=dict(type="str", aliases=["aws_secret_access_key", "aws_secret_key"], no_log=True),
        session_token=dict(type="str", aliases=["aws_session_token"], no_log=True),
        profile=dict(type="str", aliases=["aws_profile"]),
        timeout=dict(type="float", default=30.0),
    )


PROVIDER_RULES = dict(
    required_if=[
        ("provider", "rfc2136", ("server", "zone")),
        ("provider", "route53", ("zone", "hosted_zone_id"), True),
    ],
    required_together=[("key_name", "key_secret"), ("access_key", "secret_key")],
    mutually_exclusive=[("profile", "access_key"), ("profile", "session_token")],
)


def check_provider_options(module):
    """Options of the other provider are mistakes, not silently ignored settings."""
    params = module.params
    wrong = RFC2136_ONLY if params["provider"] == "route53" else ROUTE53_ONLY
    given = [name for name in wrong if params.get(name) is not None]
    if given:
        module.fail_json(msg="option(s) %s do not apply to provider %s" % (", ".join(given), params["provider"]),
                         changed=False)
    if params["timeout"] <= 0:
        module.fail_json(msg="timeout must be greater than 0", changed=False)
    if not _dns.HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=_dns.DNSPYTHON_IMPORT_ERROR)
    if params["provider"] == "route53" and not _route53().HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=_route53().BOTO3_IMPORT_ERROR)


def build_provider(params):
    """A DnsProvider from module params (raises _dns.ValidationError for bad values)."""
    query_timeout = min(_dns.QUERY_TIMEOUT, params["timeout"])
    if params["provider"] == "rfc2136":
        return _dns_rfc2136.Rfc2136Provider(
            params["server"], params["port"], params["zone"], key_name=params.get("key_name"),
            key_secret=params.get("key_secret"), key_algorithm=params.get("key_algorithm") or "hmac-sha256",
            query_timeout=query_timeout)
    return _route53().Route53Provider(
        zone=params.get("zone"), hosted_zone_id=params.get("hosted_zone_id"), endpoint_url=params.get("endpoint_url"),
        region=params.get("region"), access_key=params.get("access_key"), secret_key=params.get("secret_key"),
        session_token=params.get("session_token"), profile=params.get("profile"),
        query_timeout=max(query_timeout, 5.0))


def parse_servers(servers, default_port):
    return [_dns.parse_server(server, default_port) for server in servers or []]

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Provider options shared by dns_records and dns_records_info
    # (argument spec: plugins/module_utils/_dns_providers.py).
    DOCUMENTATION = r"""
options:
  provider:
    description:
      - Where the zone lives.
      - V(rfc2136) sends DNS UPDATE messages (TCP, TSIG-signed when O(key_name) is set) to O(server),
        for example BIND. Needs C(dnspython).
      - V(route53) calls the Route 53 API with C(boto3). Credentials come from the default chain (IAM role,
        environment, shared config) unless O(access_key)/O(secret_key) or O(profile) are given.
    type: str
    required: true
    choices: [route53, rfc2136]
  zone:
    description:
      - The zone, for example V(phoenix.test). Every record must be inside it.
      - Required with O(provider=rfc2136). With O(provider=route53), O(zone) or O(hosted_zone_id) is required.
    type: str
  hosted_zone_id:
    description:
      - Route 53 hosted zone ID (V(Z123...) or V(/hostedzone/Z123...)). Needed when public and private zones
        share a name. Only with O(provider=route53).
    type: str
  server:
    description:
      - The primary server that takes the updates (address or host name). Only with O(provider=rfc2136).
    type: str
  port:
    description:
      - TCP port of O(server), also used for authoritative servers found through the zone's NS records.
    type: int
    default: 53
  key_name:
    description:
      - TSIG key name. Without it updates are sent unsigned (most servers refuse them). Only with
        O(provider=rfc2136).
    type: str
  key_secret:
    description:
      - TSIG key secret, base64. Never returned or logged.
    type: str
  key_algorithm:
    description:
      - TSIG algorithm.
    type: str
    default: hmac-sha256
    choices: [hmac-sha256, hmac-sha512, hmac-sha384, hmac-sha224]
  endpoint_url:
    description:
      - Route 53 API endpoint, for an emulator such as moto. Only with O(provider=route53).
    type: str
    aliases: [aws_endpoint_url]
  region:
    description:
      - AWS region used to sign API calls (Route 53 is global; defaults to the environment, else V(us-east-1)).
    type: str
    aliases: [aws_region]
  access_key:
    description:
      - AWS access key ID. Prefer an IAM role or the environment. Only with O(provider=route53).
    type: str
    aliases: [aws_access_key_id, aws_access_key]
  secret_key:
    description:
      - AWS secret access key. Never returned or logged.
    type: str
    aliases: [aws_secret_access_key, aws_secret_key]
  session_token:
    description:
      - AWS session token for temporary credentials. Never returned or logged.
    type: str
    aliases: [aws_session_token]
  profile:
    description:
      - Named AWS profile from the shared configuration. Only with O(provider=route53).
    type: str
    aliases: [aws_profile]
  timeout:
    description:
      - Seconds each operation (read, send) may take including retries. Transient failures
        (timeouts, refused connections, SERVFAIL, Route 53 throttling and C(PriorRequestNotComplete)) are
        retried with jittered exponential backoff within this budget; REFUSED, NOTAUTH, bad TSIG
        signatures and unknown zones fail at once.
    type: float
    default: 30
requirements:
  - dnspython >= 2.0
  - boto3 (for O(provider=route53))
"""

"""Operator commands the role (and people) run next to gunicorn.

    python -m cloudphoenix_services check-config --service service_a [--env-file FILE]
    python -m cloudphoenix_services migrate --service service_a [--env-file FILE]

Both print one JSON line; ``migrate`` reports ``changed`` only when it applied a step (``applied``
lists the service's own; core steps and fence triggers, core/token.py, are named on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from .core.config import ConfigError, load_settings, read_env_file
from .core.db import Database, migrate_service
from .core.errors import DatabaseError

SERVICES = ("service_a", "service_b")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudphoenix_services")
    parser.add_argument("command", choices=("check-config", "migrate"))
    parser.add_argument("--service", choices=SERVICES, required=True)
    parser.add_argument("--env-file", help="KEY=VALUE settings, applied over the environment")
    args = parser.parse_args(argv)
    package = importlib.import_module(f"cloudphoenix_services.{args.service}")
    spec = package.SPEC
    try:
        env = dict(os.environ)
        if args.env_file:
            env.update(read_env_file(args.env_file))
        settings = load_settings(
            spec.name, env, needs_bucket=spec.needs_bucket, default_max_request_bytes=spec.default_max_request_bytes
        )
    except (ConfigError, OSError) as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        print(exc, file=sys.stderr)  # readable as is in a playbook's output
        return 2
    if args.command == "check-config":
        print(json.dumps({"changed": False, "msg": f"{spec.name} settings are valid"}))
        return 0
    database = Database(settings)
    try:
        done = migrate_service(database, spec.name, spec.migrations, package.FENCED_TABLES)
    except DatabaseError as exc:
        print(json.dumps({"failed": True, "msg": f"{spec.name} migrations: {exc}"}))
        print(f"{spec.name} migrations: {exc}", file=sys.stderr)
        return 3
    finally:
        database.close()
    if done["core"] or done["fenced"]:
        print(f"{spec.name} migrations: core steps {done['core']}, fence triggers on {done['fenced']}", file=sys.stderr)
    print(json.dumps({"changed": any(done.values()), "applied": done["applied"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

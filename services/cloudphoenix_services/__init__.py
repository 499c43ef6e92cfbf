"""CloudPhoenix services: one hardened core (``core``) and two thin services built on it.

Service code never imports Ansible: the role deploys it, the runbook only talks HTTP to it.
"""

__version__ = "1.0.0"

"""The pin files agree with each other, so the run-time set is exactly what the tests ran with."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.ansible import REPO_ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")


def normalise(name: str) -> str:
    """PEP 503 name normalisation: `PyYAML`, `pyyaml` and `py_yaml` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version for every `name==version` line (comments and `-r` lines skipped)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[normalise(match.group(1))] = match.group(2)
    return found


def unpinned(path: Path) -> list[str]:
    """Requirement lines that are not an exact pin (a range would let a fresh machine drift)."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-r ") and not PIN.match(line)]


def test_pins_parse_names_extras_and_comments(tmp_path: Path) -> None:
    sample = tmp_path / "r.txt"
    sample.write_text("# c\n-r other.in\nmoto[server]==5.2.5\nPyYAML==6.0.4  # why\ntyping_extensions==4.16.0\nx>=1\n")
    assert pins(sample) == {"moto": "5.2.5", "pyyaml": "6.0.4", "typing-extensions": "4.16.0"}
    assert unpinned(sample) == ["x>=1"]


def test_every_requirement_is_an_exact_pin() -> None:
    for name in ("requirements.in", "requirements.txt", "requirements-dev.in", "requirements-dev.txt",
                 "requirements-tools.in", "requirements-tools.txt", "services/requirements.txt"):
        assert unpinned(REPO_ROOT / name) == [], name


def test_run_time_pins_are_the_tested_pins() -> None:
    """requirements.txt (what users install) holds the same versions the test venv was built with."""
    dev = pins(REPO_ROOT / "requirements-dev.txt")
    run_time = pins(REPO_ROOT / "requirements.txt")
    assert run_time, "requirements.txt pins nothing"
    assert {name: version for name, version in run_time.items() if dev.get(name) != version} == {}


def test_run_time_top_level_is_in_the_lock() -> None:
    """Every top-level run-time pin (requirements.in) made it into requirements.txt at that version."""
    top = pins(REPO_ROOT / "requirements.in")
    run_time = pins(REPO_ROOT / "requirements.txt")
    assert {"boto3", "dnspython", "psycopg2-binary", "kubernetes"} <= set(top)
    assert {name: version for name, version in top.items() if run_time.get(name) != version} == {}


def test_development_tools_stay_out_of_the_run_time_set() -> None:
    run_time = pins(REPO_ROOT / "requirements.txt")
    for tool in ("ansible-lint", "molecule", "pytest", "moto", "ruff", "ansible-builder"):
        assert tool not in run_time, tool


def test_services_pins_are_the_tested_pins() -> None:
    """The services' venv and image get the versions tests/services ran with."""
    dev = pins(REPO_ROOT / "requirements-dev.txt")
    services = pins(REPO_ROOT / "services" / "requirements.txt")
    assert {name: version for name, version in services.items() if dev.get(name) != version} == {}

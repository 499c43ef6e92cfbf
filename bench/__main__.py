"""`make bench`: run every bench/bench_*.py `run()` in turn; each prints its own figures.

`python -m bench NAME` runs only bench/bench_NAME.py.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    # The checkout is importable as the collection through .build/collections (make setup).
    sys.path[:0] = [str(here.parent), str(here.parent / ".build" / "collections"), str(here.parent / "services")]
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = [f"bench_{n}" for n in argv] if argv else names
    for name in wanted:
        started = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"bench.{name}").run()
        print(f"=== {name}: {time.monotonic() - started:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

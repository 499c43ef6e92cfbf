"""Tests of services/ and roles/services."""

import sys

# No __pycache__ in services/: roles/services copies that tree as it is. This package is imported
# before its conftest, so nothing under services/ is compiled to disk by these tests.
sys.dont_write_bytecode = True

"""Every operation of the served document, fuzzed in-process with all default checks.

Volume and phases come from ``schemathesis.toml``; a failed check (a 5xx, an undeclared status or
header, a body or content type off the spec, bad input accepted) fails the operation's test.
"""

from __future__ import annotations

import pytest

from contract_tests.inprocess import CHECKS, load_schema

schema = load_schema()


@pytest.mark.usefixtures("bound_app")
@schema.parametrize()
def test_operation_conforms(case):
    case.call_and_validate(**CHECKS)

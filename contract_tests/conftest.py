"""Fixtures for the Schemathesis contract tests (see ``contract_tests/inprocess.py``)."""

from __future__ import annotations

import pytest

from contract_tests.inprocess import APP


@pytest.fixture
def bound_app(app, client):
    """:data:`contract_tests.inprocess.APP`, serving the session's app on a clean database."""
    APP.bind(app, client.portal)
    try:
        yield APP
    finally:
        APP.unbind()

"""Kundenmanagement: the customer-management API."""

import warnings

# Connexion imports Starlette's TestClient at import time, which warns about httpx; not ours to fix.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

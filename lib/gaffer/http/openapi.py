"""The OpenAPI 3 description of the HTTP API (``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from gaffer import __version__


def spec() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "gaffer", "version": __version__},
        "paths": {},
    }

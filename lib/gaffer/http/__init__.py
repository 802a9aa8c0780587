"""The HTTP API and websocket channels of gaffer, as a manager app."""

from gaffer.http.app import HttpApp
from gaffer.http.settings import HttpSettings, TlsSettings

__all__ = ["HttpApp", "HttpSettings", "TlsSettings"]

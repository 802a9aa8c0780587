"""Handlers for run records: ``/runs`` and ``/runs/<id>`` (kept by gafferd, see
:mod:`gaffer.daemon.runs`)."""

from __future__ import annotations

from typing import Any

from gaffer.errors import BadRequest, NotFound
from gaffer.http.base import BaseHandler

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class RunsBase(BaseHandler):
    def runs(self) -> Any:
        if self.gaffer.runs is None:
            raise NotFound("run records are kept by gafferd (with a state_dir), not here")
        return self.gaffer.runs

    def readable(self, job: str) -> bool:
        return self.identity.can("read", job)


def _number(name: str, text: str, cast: type[int] | type[float]) -> Any:
    try:
        value = cast(text)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise BadRequest(f"{name}: expected {kind}, got {text!r}") from None
    if value != value or value < 0:
        raise BadRequest(f"{name}: expected a number ≥ 0, got {text!r}")
    return value


class RunsHandler(RunsBase):
    """``GET /runs?job=S.J&once=1&reason=R&since=T&limit=N``: newest first."""

    async def get(self) -> None:
        runs = self.runs()
        arg = self.get_query_argument
        job = arg("job", None) or None
        if job is not None and "." in job:
            self.identity.require("read", job)
        once: bool | None = None
        flag = arg("once", None)
        if flag is not None:
            if flag.lower() not in ("0", "1", "true", "false"):
                raise BadRequest(f"once: expected 0 or 1, got {flag!r}")
            once = flag.lower() in ("1", "true")
        since = arg("since", None)
        limit = _number("limit", arg("limit", str(DEFAULT_LIMIT)), int)
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit: expected 1 to {MAX_LIMIT}, got {limit}")
        everything = self.identity.can("read", None)
        found = await runs.store.list(
            job=job,
            once=once,
            reason=arg("reason", None) or None,
            since=_number("since", since, float) if since is not None else None,
            limit=limit,
            readable=None if everything else self.readable,
        )
        self.send_json({"runs": found})


class RunHandler(RunsBase):
    """``GET /runs/<id>``: one record; ``DELETE``: cancel a running one-off run."""

    async def get(self, rid: str) -> None:
        rec = await self.runs().store.get(int(rid))
        if rec is None or not self.identity.can("read", rec["job"]):
            raise NotFound(f"run {rid} not found")
        self.send_json(rec)

    async def delete(self, rid: str) -> None:
        runs = self.runs()
        rec = await runs.store.get(int(rid))
        if rec is None or not self.identity.can("read", rec["job"]):
            raise NotFound(f"run {rid} not found")
        self.identity.require("write", rec["job"])
        self.send_json(await runs.cancel(int(rid), self.readable))

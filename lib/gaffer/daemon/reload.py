"""Re-reading the config file and applying the difference (SIGHUP, ``POST /reload``).

Unchanged jobs are not touched; a change of ``numprocesses`` alone scales in
place, one of the metadata (description, tags, version) is applied in place
(reported as updated); any other change is rolled out slot by slot (new process
first, per the job's ``rolling``); jobs gone from the file are unloaded, new ones loaded. Jobs
loaded through the API are left alone. An invalid file changes nothing: the
daemon keeps running what it runs, and the failure is logged, published as a
``reload`` event and kept for ``GET /reload``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gaffer.config import ProcessConfig
from gaffer.daemon.config import DaemonConfig, JobEntry, load_file
from gaffer.errors import GafferError, NotFound
from gaffer.manager import Manager

log = logging.getLogger("gafferd.reload")

JobKey = tuple[str, str]  # (session, job)


@dataclass
class ReloadResult:
    ok: bool
    source: str | None
    time: float = field(default_factory=time.time)
    error: str | None = None
    loaded: list[str] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    scaled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "time": self.time,
            "error": self.error,
            "loaded": self.loaded,
            "unloaded": self.unloaded,
            "updated": self.updated,
            "scaled": self.scaled,
            "unchanged": self.unchanged,
            "failed": self.failed,
        }


def _jobs(config: DaemonConfig) -> dict[JobKey, ProcessConfig]:
    return {(e.session, e.config.name): e.config for e in config.jobs}


class Reloader:
    """Holds the config the daemon runs and applies a new one on request."""

    def __init__(
        self,
        manager: Manager,
        config: DaemonConfig,
        path: str | None,
        on_start: Callable[[], None] | None = None,
        on_done: Callable[[ReloadResult], None] | None = None,
    ) -> None:
        self.manager = manager
        self.config = config
        self.path = path
        self.on_start = on_start
        self.on_done = on_done
        self.last: ReloadResult | None = None
        self._lock = asyncio.Lock()

    async def reload(self) -> ReloadResult:
        """Re-read the file and apply the difference; one reload at a time."""
        async with self._lock:
            if self.on_start is not None:
                self.on_start()
            result = await self._reload()
            self.last = result
            self.manager.emitter.publish("reload", ("reload", "daemon.reload"), result.to_dict())
            if result.ok:
                log.info(
                    "reloaded %s: loaded %s, unloaded %s, updated %s, scaled %s, unchanged %d",
                    self.path,
                    result.loaded or "-",
                    result.unloaded or "-",
                    result.updated or "-",
                    result.scaled or "-",
                    len(result.unchanged),
                )
            else:
                log.error("reload failed, still running the previous config: %s", result.error)
            if self.on_done is not None:
                self.on_done(result)
            return result

    async def _reload(self) -> ReloadResult:
        if self.path is None:
            return ReloadResult(False, None, error="no config file: running the embedded default")
        loop = asyncio.get_running_loop()
        try:
            # off the loop: reading a file may block (NFS, a slow disk)
            new = await loop.run_in_executor(None, load_file, self.path)
        except GafferError as e:
            return ReloadResult(False, self.path, error=e.reason)
        except Exception as e:  # whatever the file holds, a reload reports, never dies
            return ReloadResult(False, self.path, error=f"{type(e).__name__}: {e}")
        if new.http != self.config.http or new.loop != self.config.loop:
            log.warning("daemon: settings changed in %s; they apply at the next start", self.path)
        result = ReloadResult(True, self.path)
        old_jobs, new_jobs = _jobs(self.config), _jobs(new)
        waits: list[tuple[str, asyncio.Future[Any]]] = []
        for session, name in old_jobs:
            if (session, name) not in new_jobs:
                full = f"{session}.{name}"
                try:
                    waits.append((full, self.manager.unload(name, session)))
                    result.unloaded.append(full)
                except NotFound:
                    result.unloaded.append(full)  # already unloaded through the API
        for (session, name), cfg in new_jobs.items():
            full = f"{session}.{name}"
            old = old_jobs.get((session, name))
            try:
                if old is None and full not in self.manager.jobs():
                    # the file was checked as a whole (``after``): in any order
                    self.manager.load(cfg, sessionid=session, check_after=False)
                    result.loaded.append(full)
                elif old == cfg:
                    result.unchanged.append(full)
                elif full not in self.manager.jobs():
                    result.unchanged.append(full)  # unloaded through the API: left so
                else:
                    if (
                        old is not None
                        and old.numprocesses != cfg.numprocesses
                        and old.runs_like(cfg)
                    ):
                        result.scaled.append(full)
                    else:
                        result.updated.append(full)
                    fut = self.manager.update(cfg, sessionid=session, check_after=False)
                    waits.append((full, fut))
            except GafferError as e:
                result.failed[full] = e.reason
        for full, fut in waits:
            try:
                await fut
            except GafferError as e:
                result.failed[full] = e.reason
        if result.failed:
            result.ok = False
            result.error = "; ".join(f"{k}: {v}" for k, v in result.failed.items())
        # What runs now is the new file, except where a rollout failed and kept
        # the old processes: those keep their old entry, so a next reload retries.
        kept = {k: v for k, v in old_jobs.items() if f"{k[0]}.{k[1]}" in result.failed}
        new.jobs = [
            JobEntry(e.session, kept.get((e.session, e.config.name), e.config)) for e in new.jobs
        ]
        self.config = new
        return result

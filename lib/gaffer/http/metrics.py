"""Prometheus metrics of a :class:`~gaffer.manager.Manager`, served at ``GET /metrics``.

:class:`MetricsCollector` reads the manager's jobs and processes, and the
daemon's own process, each time Prometheus scrapes: nothing is sampled in the
background and no metric object outlives a scrape, so a job that is unloaded
simply disappears from the next scrape. :func:`make_registry` registers it on a
registry of its own (never ``prometheus_client.REGISTRY``, which is process-wide
and would mix in, or clash with, whatever else the process registers) and
:func:`render` gives the body and content type of the response.

Collection reads manager state and so, like every other manager call, must run
on the manager's loop thread. It costs one psutil sample per live process.

Metrics (``job`` is the job's ``session.job`` name, ``pid`` gaffer's internal pid)::

    gaffer_job_processes{job}                  live supervised processes
    gaffer_job_wanted_processes{job}           numprocesses
    gaffer_job_running_processes{job}          supervised processes in state running
    gaffer_job_active{job}                     1 if the job is started, else 0
    gaffer_job_oneoff_processes{job}           one-off (committed) runs not yet ended
    gaffer_job_restarts_total{job}             slot restarts (counter)
    gaffer_job_exits_total{job,reason}         exits by reason (counter)
    gaffer_process_cpu_percent{job,pid,index}
    gaffer_process_memory_rss_bytes{job,pid,index}
    gaffer_process_memory_percent{job,pid,index}
    gaffer_process_uptime_seconds{job,pid,index}
    gaffer_daemon_jobs, gaffer_daemon_processes
    gaffer_daemon_events_published_total       (counter)
    gaffer_daemon_cpu_percent, gaffer_daemon_memory_rss_bytes,
    gaffer_daemon_open_fds, gaffer_daemon_uptime_seconds
    gaffer_daemon_<name>                       each figure of the ``daemon`` callback
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psutil
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from gaffer.job import Job
from gaffer.manager import Manager
from gaffer.process import Process

log = logging.getLogger("gaffer.http.metrics")

DaemonFigures = Callable[[], Mapping[str, float]]
Family = GaugeMetricFamily | CounterMetricFamily

JOB_LABELS = ("job",)
EXIT_LABELS = ("job", "reason")
PROCESS_LABELS = ("job", "pid", "index")

# (name, help) of the per-job gauges.
JOB_GAUGES = (
    ("gaffer_job_processes", "Live supervised processes of the job."),
    ("gaffer_job_wanted_processes", "Processes the job wants (numprocesses)."),
    ("gaffer_job_running_processes", "Supervised processes in the running state."),
    ("gaffer_job_active", "1 if the job is started, 0 if it is stopped."),
    ("gaffer_job_oneoff_processes", "One-off (committed) runs of the job not yet ended."),
)

# (key in Process.stats(), name, help) of the per-process gauges.
PROCESS_GAUGES = (
    ("cpu", "gaffer_process_cpu_percent", "CPU use since the previous sample, % of one CPU."),
    ("rss", "gaffer_process_memory_rss_bytes", "Resident memory of the process, in bytes."),
    ("mem", "gaffer_process_memory_percent", "Resident memory, % of the machine's memory."),
    ("uptime", "gaffer_process_uptime_seconds", "Seconds since the process was spawned."),
)

# (suffix, help) of the daemon's own figures, read with psutil.
SELF_GAUGES = (
    ("cpu_percent", "CPU use of the daemon since the previous scrape, % of one CPU."),
    ("memory_rss_bytes", "Resident memory of the daemon, in bytes."),
    ("open_fds", "File descriptors the daemon has open."),
    ("uptime_seconds", "Seconds since the daemon started."),
)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class MetricsCollector(Collector):
    """Builds every metric afresh from ``manager`` at each scrape.

    ``daemon``, if given, returns extra figures of the daemon (the HTTP app's
    connections, channel clients...); each ``name: value`` becomes the gauge
    ``gaffer_daemon_<name>``. A figure whose name is not a valid metric name or
    is one of the built-in daemon metrics is skipped (and logged once): one bad
    figure must not make the whole scrape fail.
    """

    def __init__(self, manager: Manager, daemon: DaemonFigures | None = None) -> None:
        self._manager = manager
        self._daemon = daemon
        self._warned: set[str] = set()
        # Kept across scrapes: psutil's cpu_percent(None) measures since the
        # previous call on the same object, i.e. between two scrapes.
        self._self: psutil.Process | None = None
        with contextlib.suppress(psutil.Error):
            self._self = psutil.Process()
            # The first call only sets the reference point (it returns 0.0), so
            # the first scrape measures since the collector was created.
            self._self.cpu_percent(None)

    def describe(self) -> Iterable[Metric]:
        # Lets a registry learn the names without calling collect(), which reads
        # the manager and so must run on its loop thread. The `daemon` extras are
        # not known in advance and are not described.
        return list(_families().values())

    def collect(self) -> Iterable[Metric]:
        families = _families()
        jobs = [self._manager.get(name) for name in self._manager.jobs()]
        for job in jobs:
            self._collect_job(job, families)
        self._collect_daemon(jobs, families)
        out: list[Metric] = [*families.values()]
        out += self._extras(_reserved(out))
        return out

    # -- jobs and their processes ---------------------------------------------------

    def _collect_job(self, job: Job, families: dict[str, Family]) -> None:
        labels = [job.name]
        figures = {
            "gaffer_job_processes": len(job.processes),
            "gaffer_job_wanted_processes": job.numprocesses,
            "gaffer_job_running_processes": job.running,
            "gaffer_job_active": int(job.active),
            "gaffer_job_oneoff_processes": len(job.once),
        }
        for name, value in figures.items():
            _add(families[name], labels, value)
        _add(families["gaffer_job_restarts_total"], labels, job.restarts)
        for reason, count in sorted(job.exits_by_reason.items()):
            _add(families["gaffer_job_exits_total"], [job.name, reason], count)

        # Every live process of the job: supervised ones, one-off runs (index -1)
        # and those being replaced by a reload, which still use resources. The
        # pid label keeps two processes of one slot apart during a rollout.
        live = sorted((p for p in job.all_processes() if p.alive), key=lambda p: p.pid)
        for proc in live:
            stats = _stats(proc)
            proc_labels = [job.name, str(proc.pid), str(proc.index)]
            for key, name, _ in PROCESS_GAUGES:
                figure = stats.get(key)
                if figure is not None:  # None: psutil could not read it (gone, denied)
                    _add(families[name], proc_labels, figure)

    # -- the daemon ------------------------------------------------------------------

    def _collect_daemon(self, jobs: list[Job], families: dict[str, Family]) -> None:
        _add(families["gaffer_daemon_jobs"], [], len(jobs))
        _add(families["gaffer_daemon_processes"], [], len(self._manager.pids()))
        # The emitter's sequence number counts every event published.
        _add(families["gaffer_daemon_events_published_total"], [], self._manager.emitter.last_seq)
        for suffix, value in self._self_figures().items():
            _add(families[f"gaffer_daemon_{suffix}"], [], value)

    def _self_figures(self) -> dict[str, float]:
        proc = self._self
        out: dict[str, float] = {}
        if proc is None:
            return out
        readers: dict[str, Callable[[], float]] = {
            "cpu_percent": lambda: proc.cpu_percent(None),
            "memory_rss_bytes": lambda: proc.memory_info().rss,
            "open_fds": proc.num_fds,
            "uptime_seconds": lambda: time.time() - proc.create_time(),
        }
        try:
            with proc.oneshot():
                for suffix, read in readers.items():
                    with contextlib.suppress(psutil.Error):
                        out[suffix] = read()
        except psutil.Error:  # a scrape never fails for want of a figure
            pass
        return out

    def _extras(self, reserved: set[str]) -> list[Metric]:
        if self._daemon is None:
            return []
        try:
            figures = dict(self._daemon())
        except Exception:
            log.exception("the daemon figures callback failed; scraping without them")
            return []
        out: list[Metric] = []
        for key, value in sorted(figures.items()):
            name = f"gaffer_daemon_{key}"
            if not _METRIC_NAME.fullmatch(name) or name in reserved:
                self._warn_once(name, "not a valid or free metric name")
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                self._warn_once(name, f"not a number: {value!r}")
                continue
            out.append(GaugeMetricFamily(name, f"Daemon figure {key}.", value=number))
        return out

    def _warn_once(self, name: str, why: str) -> None:
        # Once per name: the callback returns the same figures at every scrape.
        if name not in self._warned:
            self._warned.add(name)
            log.warning("daemon figure %r skipped: %s", name, why)


def _families() -> dict[str, Family]:
    """Empty families of every fixed metric, in exposition order."""
    families: dict[str, Family] = {}
    for name, doc in JOB_GAUGES:
        families[name] = GaugeMetricFamily(name, doc, labels=JOB_LABELS)
    families["gaffer_job_restarts_total"] = CounterMetricFamily(
        "gaffer_job_restarts_total",
        "Times a slot of the job got a replacement process after an exit.",
        labels=JOB_LABELS,
    )
    families["gaffer_job_exits_total"] = CounterMetricFamily(
        "gaffer_job_exits_total",
        "Exits of the job's processes by reason (exited, killed, stopped, "
        "start_failed, spawn_error).",
        labels=EXIT_LABELS,
    )
    for _, name, doc in PROCESS_GAUGES:
        families[name] = GaugeMetricFamily(name, doc, labels=PROCESS_LABELS)
    families["gaffer_daemon_jobs"] = GaugeMetricFamily(
        "gaffer_daemon_jobs", "Jobs loaded in the manager."
    )
    families["gaffer_daemon_processes"] = GaugeMetricFamily(
        "gaffer_daemon_processes", "Live processes of the manager, one-off runs included."
    )
    families["gaffer_daemon_events_published_total"] = CounterMetricFamily(
        "gaffer_daemon_events_published_total", "Events published on the manager's event bus."
    )
    for suffix, doc in SELF_GAUGES:
        name = f"gaffer_daemon_{suffix}"
        families[name] = GaugeMetricFamily(name, doc)
    return families


def _reserved(families: Iterable[Metric]) -> set[str]:
    """Names a daemon extra may not take: those of ``families`` and of their
    samples (a counter ``x`` is exposed as ``x_total``)."""
    names: set[str] = set()
    for family in families:
        names.add(family.name)
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
    return names


def _add(family: Family, labels: list[str], value: float) -> None:
    family.add_metric(labels, float(value))


def _stats(proc: Process) -> dict[str, Any]:
    # Process.stats() already turns a vanished or inaccessible process into
    # None figures; this catches what it lets through (psutil.Error from the
    # oneshot itself, say), since a scrape must never fail because of psutil.
    try:
        return proc.stats()
    except psutil.Error:
        return {}


def make_registry(manager: Manager, daemon: DaemonFigures | None = None) -> CollectorRegistry:
    """A private registry holding a :class:`MetricsCollector` of ``manager``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(manager, daemon))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """(body, content type) of a ``GET /metrics`` response. Call it on the
    manager's loop thread."""
    return generate_latest(registry), CONTENT_TYPE_LATEST

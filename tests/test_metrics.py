"""The Prometheus exposition of a Manager (gaffer.http.metrics), on real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Mapping
from typing import cast

import psutil
import pytest
from conftest import SLEEP, TIMEOUT
from gaffer import states
from gaffer.http.metrics import MetricsCollector, make_registry, render
from gaffer.manager import Manager
from prometheus_client import REGISTRY
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

PROCESS_GAUGES = (
    "gaffer_process_cpu_percent",
    "gaffer_process_memory_rss_bytes",
    "gaffer_process_memory_percent",
    "gaffer_process_uptime_seconds",
)


class Scrape:
    """One rendered and parsed scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        body, self.content_type = render(registry)
        self.families = {f.name: f for f in text_string_to_metric_families(body.decode())}

    def samples(self, name: str) -> Iterator[Sample]:
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == name:
                    yield sample

    def find(self, name: str, **labels: str) -> list[Sample]:
        return [
            s for s in self.samples(name) if all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        found = self.find(name, **labels)
        assert len(found) == 1, f"{name}{labels}: {found}"
        return found[0].value


def proc_labels(job: str, pid: int, index: int) -> dict[str, str]:
    return {"job": job, "pid": str(pid), "index": str(index)}


async def test_metrics_after_a_crash(manager: Manager) -> None:
    job = manager.load({"name": "web", **SLEEP, "numprocesses": 2})
    await manager.wait_running("web", timeout=TIMEOUT)
    sub = manager.subscribe(".")
    victim = manager.list("web")[1]
    os.kill(victim.os_pid or 0, signal.SIGKILL)

    def repaired() -> bool:
        procs = job.processes
        return (
            job.restarts >= 1
            and victim.pid not in job.pids
            and len(procs) == 2
            and all(p.state == states.RUNNING for p in procs)
        )

    await manager.wait_for(repaired, timeout=TIMEOUT, topic="job.default.web")
    last_seq = 0
    while (event := sub.get_nowait()) is not None:
        last_seq = event.seq
    manager.unsubscribe(".", sub)

    extras = {"http_connections": 3, "channel_clients": 2, "events_replay_size": 120}
    scrape = Scrape(make_registry(manager, daemon=lambda: extras))
    assert scrape.content_type == CONTENT_TYPE_LATEST
    name = "default.web"

    assert scrape.value("gaffer_job_processes", job=name) == 2
    assert scrape.value("gaffer_job_wanted_processes", job=name) == 2
    assert scrape.value("gaffer_job_running_processes", job=name) == 2
    assert scrape.value("gaffer_job_active", job=name) == 1
    assert scrape.value("gaffer_job_oneoff_processes", job=name) == 0
    assert scrape.families["gaffer_job_restarts"].type == "counter"
    assert scrape.value("gaffer_job_restarts_total", job=name) == job.restarts >= 1
    assert scrape.families["gaffer_job_exits"].type == "counter"
    exits = {s.labels["reason"]: s.value for s in scrape.find("gaffer_job_exits_total", job=name)}
    assert exits == {"killed": 1}
    assert job.history[-1]["reason"] == "killed"

    # one sample per live process and figure, labelled with its pid and slot
    live = manager.list("web")
    assert [p.index for p in live] == [0, 1]
    for metric in PROCESS_GAUGES:
        found = scrape.find(metric, job=name)
        assert sorted(s.labels["pid"] for s in found) == sorted(str(p.pid) for p in live)
        for proc in live:
            assert scrape.value(metric, **proc_labels(name, proc.pid, proc.index)) >= 0
        assert not scrape.find(metric, pid=str(victim.pid))
    for proc in live:
        labels = proc_labels(name, proc.pid, proc.index)
        assert scrape.value("gaffer_process_memory_rss_bytes", **labels) > 0
        assert scrape.value("gaffer_process_memory_percent", **labels) > 0

    assert scrape.value("gaffer_daemon_jobs") == 1
    assert scrape.value("gaffer_daemon_processes") == 2
    assert scrape.families["gaffer_daemon_events_published"].type == "counter"
    assert scrape.value("gaffer_daemon_events_published_total") >= last_seq > 0
    assert scrape.value("gaffer_daemon_cpu_percent") >= 0
    me = psutil.Process()
    assert scrape.value("gaffer_daemon_memory_rss_bytes") > 0
    assert scrape.value("gaffer_daemon_open_fds") > 0
    assert 0 <= scrape.value("gaffer_daemon_uptime_seconds") <= time.time() - me.create_time() + 1
    assert scrape.value("gaffer_daemon_http_connections") == 3
    assert scrape.value("gaffer_daemon_channel_clients") == 2
    assert scrape.value("gaffer_daemon_events_replay_size") == 120


async def test_one_off_runs_stopped_jobs_and_repeated_scrapes(manager: Manager) -> None:
    job = manager.load({"name": "w", **SLEEP})
    await manager.wait_running("w", timeout=TIMEOUT)
    registry = make_registry(manager)
    once = manager.commit("w")
    run = manager.get_process(once)
    await manager.wait_for(lambda: run.state == states.RUNNING, timeout=TIMEOUT)

    scrape = Scrape(registry)
    assert scrape.value("gaffer_job_oneoff_processes", job="default.w") == 1
    assert scrape.value("gaffer_job_processes", job="default.w") == 1  # supervised only
    assert scrape.value("gaffer_daemon_processes") == 2
    for metric in PROCESS_GAUGES:
        # a one-off run is outside the slots: index -1
        assert scrape.value(metric, **proc_labels("default.w", once, -1)) >= 0
    assert not scrape.find("gaffer_daemon_http_connections")

    await manager.stop_job("w")
    scrape = Scrape(registry)  # the same collector, scraped again
    assert not job.active
    assert scrape.value("gaffer_job_active", job="default.w") == 0
    assert scrape.value("gaffer_job_processes", job="default.w") == 0
    assert scrape.value("gaffer_job_wanted_processes", job="default.w") == 1
    assert scrape.value("gaffer_job_restarts_total", job="default.w") == 0
    assert scrape.value("gaffer_job_exits_total", job="default.w", reason="stopped") == 1
    assert [s.labels["pid"] for s in scrape.find("gaffer_process_cpu_percent")] == [str(once)]
    assert scrape.value("gaffer_daemon_cpu_percent") >= 0

    await manager.unload("w")
    scrape = Scrape(registry)
    assert scrape.value("gaffer_daemon_jobs") == 0
    assert not scrape.find("gaffer_job_processes")
    assert not scrape.find("gaffer_process_uptime_seconds")


async def test_psutil_errors_never_escape(
    manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.load({"name": "w", **SLEEP})
    await manager.wait_running("w", timeout=TIMEOUT)
    registry = make_registry(manager)
    pid = manager.pids("w")[0]

    def denied(self: psutil.Process) -> int:
        raise psutil.AccessDenied(self.pid)

    # A figure psutil may not read is left out; the others are there.
    monkeypatch.setattr(psutil.Process, "num_fds", denied)
    scrape = Scrape(registry)
    assert not scrape.find("gaffer_daemon_open_fds")
    assert scrape.value("gaffer_daemon_memory_rss_bytes") > 0
    assert scrape.value("gaffer_process_memory_rss_bytes", pid=str(pid)) > 0

    @contextlib.contextmanager
    def broken(self: psutil.Process) -> Iterator[None]:
        raise psutil.Error("broken")
        yield

    # An error that Process.stats() lets through (it catches only a vanished
    # process and AccessDenied) costs the figures, never the scrape.
    monkeypatch.setattr(psutil.Process, "oneshot", broken)
    scrape = Scrape(registry)
    for suffix in ("cpu_percent", "memory_rss_bytes", "open_fds", "uptime_seconds"):
        assert not scrape.find(f"gaffer_daemon_{suffix}")
    for metric in PROCESS_GAUGES:
        assert not scrape.find(metric)
    assert scrape.value("gaffer_job_processes", job="default.w") == 1


def test_daemon_figures_that_cannot_be_metrics(manager: Manager) -> None:
    # what a careless HTTP app might return
    figures = cast(
        Mapping[str, float],
        {
            "jobs": 7,  # a built-in: the real figure wins
            "events_published": 5,  # would clash with the counter's family name
            "bad name": 1,
            "not_a_number": "x",
            "fine": 1.5,
        },
    )
    scrape = Scrape(make_registry(manager, daemon=lambda: figures))
    assert scrape.value("gaffer_daemon_jobs") == 0
    assert scrape.value("gaffer_daemon_fine") == 1.5
    assert not scrape.find("gaffer_daemon_not_a_number")
    assert not scrape.find("gaffer_daemon_events_published")
    assert len(list(scrape.samples("gaffer_daemon_events_published_total"))) == 1

    def fails() -> Mapping[str, float]:
        raise RuntimeError("boom")

    scrape = Scrape(make_registry(manager, daemon=fails))
    assert scrape.value("gaffer_daemon_jobs") == 0


def test_registry_is_private(manager: Manager) -> None:
    registry = make_registry(manager)
    make_registry(manager)  # a second one does not clash with the first
    assert b"gaffer_" not in generate_latest(REGISTRY)
    # describe() names the metrics, so a clash on one registry is caught at once
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(MetricsCollector(manager))

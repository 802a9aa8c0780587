"""The shapes of the daemon's answers, for type checkers.

The clients return the daemon's JSON as plain dicts (nothing to convert, and
nothing lost when the daemon adds a field); these TypedDicts name what is in
them. The blocking client imports this module only when type checking.
"""

from __future__ import annotations

from typing import Any, TypedDict


class ProcessRow(TypedDict, total=False):
    pid: int | None
    os_pid: int | None
    index: int
    state: str | None
    reason: str | None
    once: bool
    uptime: float | None
    slot: str | None
    restarts: int
    next_start: float | None
    cpu: float | None
    mem: float | None
    rss: int | None


class JobStatus(TypedDict):
    name: str
    active: bool
    numprocesses: int
    running: int
    ready: int
    restarts: int
    stopping: int
    description: str
    tags: list[str]
    version: str
    waiting: str | None
    processes: list[ProcessRow]


class SlotInfo(TypedDict, total=False):
    index: int
    status: str
    restarts: int
    pid: int | None
    state: str | None
    failures: int
    next_start: float | None


class JobInfo(TypedDict, total=False):
    name: str
    active: bool
    running: int
    ready: int
    running_out: int
    max_processes: int
    numprocesses: int
    processes: list[int]
    slots: list[SlotInfo]
    restarts: int
    exits_by_reason: dict[str, int]
    history: list[dict[str, Any]]
    config: dict[str, Any]
    waiting: str | None


class ProcessStats(TypedDict, total=False):
    pid: int
    os_pid: int | None
    name: str
    cpu: float | None
    mem: float | None
    rss: int | None
    vms: int | None
    threads: int | None
    fds: int | None
    uptime: float | None
    ctime: float | None
    nice: int | None
    username: str | None


class JobStats(TypedDict, total=False):
    name: str
    stats: list[ProcessStats]
    cpu: float
    max_cpu: float
    min_cpu: float
    mem: float
    max_mem: float
    min_mem: float


class ProcessInfo(TypedDict, total=False):
    pid: int
    name: str
    index: int
    cmd: str
    args: list[str]
    env: dict[str, str]
    uid: int | None
    gid: int | None
    os_pid: int | None
    create_time: float | None
    commited: bool
    redirect_output: list[str]
    redirect_input: bool
    custom_streams: list[str]
    active: bool
    state: str
    reason: str | None
    uptime: float | None
    exit_status: int | None
    term_signal: int | None
    term_signal_name: str | None


class Permissions(TypedDict, total=False):
    admin: bool
    create_key: bool
    create_user: bool
    manage: list[str]
    write: list[str]
    read: list[str]


class KeyInfo(TypedDict, total=False):
    key: str
    label: str
    permissions: Permissions
    parent: str | None
    user: str | None
    created: float
    keys: list[KeyInfo]


class UserInfo(TypedDict, total=False):
    username: str
    user_type: int
    key: str | None


class ReloadResult(TypedDict, total=False):
    ok: bool
    source: str | None
    time: float
    error: str | None
    loaded: list[str]
    unloaded: list[str]
    updated: list[str]
    scaled: list[str]
    unchanged: list[str]
    failed: dict[str, str]  # job -> why


class Event(TypedDict, total=False):
    event: str
    topic: str
    seq: int
    time: float
    name: str
    pid: int
    os_pid: int

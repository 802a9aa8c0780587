"""Test harness: every test runs on both loops, against real processes.

- ``loop`` is parametrised over uvloop and asyncio; ``async def`` tests run on it.
- ``manager`` is a started Manager on that loop, stopped after the test.
- The test process is a child subreaper, so anything a test's processes leave
  behind (grandchildren included) comes back to us; ``no_leftovers`` fails the
  test if any process is still alive when it ends.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from gaffer.events import Event, Subscription
from gaffer.manager import Manager

PR_SET_CHILD_SUBREAPER = 36
CHILDREN = Path(__file__).parent / "children"
PYTHON = sys.executable
TIMEOUT = 10.0
SLEEP = {"cmd": "sleep", "args": ["3600"], "startsecs": 0}  # a job that just runs


def pytest_configure(config: pytest.Config) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    loop = pyfuncitem._request.getfixturevalue("loop")
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
    loop.run_until_complete(asyncio.wait_for(pyfuncitem.obj(**kwargs), 60))
    return True


def _reap_zombies() -> None:
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError):
            pass


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    _reap_zombies()
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{child.pid} {child.cmdline()}")
            child.kill()
        except psutil.NoSuchProcess:
            pass
    if alive:
        psutil.wait_procs(psutil.Process().children(recursive=True), timeout=5)
        _reap_zombies()
        pytest.fail(f"processes left behind: {alive}")


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def loop(loop_kind: str) -> Iterator[asyncio.AbstractEventLoop]:
    from gaffer.loop import new_event_loop

    lp = new_event_loop(loop_kind)
    asyncio.set_event_loop(lp)
    yield lp
    lp.run_until_complete(lp.shutdown_asyncgens())
    lp.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def manager(loop: asyncio.AbstractEventLoop) -> Iterator[Manager]:
    m = Manager(loop)
    m.start()
    yield m
    loop.run_until_complete(asyncio.wait_for(m.astop(), 30))


def child(name: str) -> str:
    """Path of a helper program in tests/children."""
    return str(CHILDREN / name)


async def next_event(
    sub: Subscription, predicate: Callable[[Event], bool] = lambda e: True, timeout: float = TIMEOUT
) -> Event:
    """The next event on ``sub`` that satisfies ``predicate``; fails on timeout."""

    async def find() -> Event:
        async for event in sub:
            if predicate(event):
                return event
        raise AssertionError("subscription closed")

    try:
        return await asyncio.wait_for(find(), timeout)
    except TimeoutError:
        raise AssertionError(f"no matching event on {sub.topic!r} within {timeout}s") from None


async def output_of(sub: Subscription, until: bytes, timeout: float = TIMEOUT) -> bytes:
    """Collect output events on ``sub`` until ``until`` has been seen."""
    buf = b""

    async def collect() -> bytes:
        nonlocal buf
        async for event in sub:
            if event.type == "output":
                buf += event.data["data"]
                if until in buf:
                    return buf
        return buf

    try:
        return await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise AssertionError(f"never saw {until!r} in output; got {buf!r}") from None


def py(code: str, **kw: Any) -> dict[str, Any]:
    """A job config running ``python -c code``."""
    return {"cmd": PYTHON, "args": ["-c", code], **kw}


async def gone(pid: int, timeout: float) -> bool:
    """Wait (on a pidfd, no polling) until process ``pid`` has exited; False on timeout.
    A zombie counts as gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await asyncio.wait_for(done, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@pytest.fixture
def api(manager: Manager, tmp_path: Path) -> Any:
    """The HTTP API on ``manager``: a unix socket in tmp, and 127.0.0.1 on a
    random port (keys required), keys kept in memory."""
    from httpkit import start_app

    return start_app(manager, tmp_path)

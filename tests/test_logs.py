"""Job output to log files (gafferd's LogFiles app on a real manager): a flood
reaches the file whole and in order, the pipe paused while the writer catches up."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from conftest import PYTHON
from gaffer.daemon.logs import LogFiles, LogSettings
from gaffer.manager import Manager

LINES = 300_000
FLOOD = (
    "import sys\n"
    "w = sys.stdout.buffer.write\n"
    f"for i in range({LINES}):\n"
    "    w(b'%08d ' % i + b'x' * 90 + b'\\n')\n"
)


def expected() -> bytes:
    return b"".join(b"%08d " % i + b"x" * 90 + b"\n" for i in range(LINES))


def test_a_flood_reaches_the_file_whole(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    # A queue of one byte: every chunk fills it, so the pipe is paused and resumed
    # at every turn -- the slowest disk there could be.
    logs = LogFiles(LogSettings(str(tmp_path / "{job}.{stream}.log"), max_bytes=0), {}, 1)
    manager = Manager(loop)
    manager.start(apps=[logs])

    async def run() -> None:
        job = manager.load(
            {"name": "flood", "cmd": PYTHON, "args": ["-c", FLOOD], "restart": "never"}
        )
        (proc,) = job.processes
        drained = loop.create_future()
        proc.when_drained(lambda _: drained.set_result(None))
        await asyncio.wait_for(asyncio.gather(proc.wait(), drained), 60)
        assert proc.exit is not None and proc.exit.exit_status == 0
        await loop.run_in_executor(None, logs.stop)  # the writer empties its queue first
        await manager.astop()

    loop.run_until_complete(run())
    data = (tmp_path / "flood.stdout.log").read_bytes()
    assert len(data) == LINES * 100
    assert hashlib.sha256(data).digest() == hashlib.sha256(expected()).digest()
    assert logs.pauses > 0

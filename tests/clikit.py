"""Running the real ``gaffer`` command against a real gafferd, for the CLI tests.

``served(tmp_path, config)`` starts a private gafferd (socket and state in
``tmp_path``) and yields a :class:`Gaffer` that runs the command against it;
the daemon is stopped (and killed if it will not stop) on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from test_gafferd import daemon, read_until

GAFFER = [sys.executable, "-m", "gaffer.cli.main"]


class Gaffer:
    """The ``gaffer`` command pointed at one daemon (by ``-H``), with a
    private HOME (so no profile of the machine's user is read) and no colours
    unless a test asks."""

    def __init__(self, sock: str, home: Path, daemon: subprocess.Popen[bytes] | None = None):
        self.sock = sock
        self.home = home
        self.daemon = daemon
        home.mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GAFFER_")}
        env.pop("NO_COLOR", None)
        env.update(HOME=str(self.home), COLUMNS="200", **extra)
        return env

    def argv(self, *args: str, host: bool = True) -> list[str]:
        return [*GAFFER, *(["-H", self.sock] if host else []), *args]

    def __call__(
        self,
        *args: str,
        host: bool = True,
        input: str | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args, host=host),
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=env or self.env(),
        )

    def json(self, *args: str, **kw: Any) -> Any:
        """Run with --json; the exit code must be 0; the parsed output."""
        r = self(*args, "--json", **kw)
        assert r.returncode == 0, (
            f"gaffer {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        )
        return json.loads(r.stdout)

    def popen(self, *args: str, host: bool = True, **kw: Any) -> subprocess.Popen[str]:
        """A long-running command (``logs -f``, ``events``, ``dev``), its
        output piped; the caller stops it."""
        return subprocess.Popen(
            self.argv(*args, host=host),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=kw.pop("env", None) or self.env(),
            **kw,
        )


@contextlib.contextmanager
def served(tmp_path: Path, config: str = "", *args: str) -> Iterator[Gaffer]:
    """A gafferd running ``config`` (YAML text), ready; and the command for it."""
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(config or "jobs: {}\n")
    with daemon(tmp_path, "-c", str(cfg), *args) as proc:
        try:
            read_until(proc, b"gafferd ")
            yield Gaffer(str(tmp_path / "run" / "gafferd.sock"), tmp_path / "home", proc)
        finally:
            # also when the test failed: the daemon stops its processes itself
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            if proc.stderr is not None:
                proc.stderr.close()


def sleeper(name: str = "web", n: int = 1, startsecs: float = 0) -> str:
    """YAML for a job of ``n`` ``sleep 3600`` processes."""
    return (
        f"  {name}:\n    cmd: sleep\n    args: ['3600']\n"
        f"    numprocesses: {n}\n    startsecs: {startsecs}\n"
    )

"""The three daemons compared by ``bench/compare.py``: gaffer, supervisord and
circus, each written an equivalent config, started, driven and stopped the
same way.

The peers come from PyPI into their own environment, ``bench/.venv-peers``
(``python3.11 -m venv`` + ``pip install`` of :data:`PINS`), created on first
use and reused after (``.installed-stamp`` records the pins). circus 0.19.0
imports and runs on Python 3.11 with pyzmq 27 (no older release needed).

**Equivalent configs.** Every job runs the same argv (absolute paths, so no
PATH search differs) with the same environment: ``PATH`` (gaffer's default
one) and the run's marker variable, plus whatever each daemon adds itself
(``GAFFER_*``, ``SUPERVISOR_*``); the daemons are started with only those
variables (and ``HOME``, ``LANG``) in their own environment. stdout and stderr
are captured to files (no rotation), restarting is on, and nothing waits before
a process counts as started:

- gaffer: ``startsecs: 0``, ``restart: always`` (the default), logs to
  ``daemon.logs.path`` with ``max_bytes: 0``, ``graceful_timeout: 2``, uvloop;
  flapping protection at its default (the benchmark never kills one slot more
  than once a run, so it cannot trigger).
- supervisord: ``startsecs=0``, ``autorestart=true``, ``stdout_logfile`` /
  ``stderr_logfile`` per process with ``*_logfile_maxbytes=0``,
  ``stopwaitsecs=2``, ``minfds`` raised for the children's pipes. Its docs
  offer nothing that shortens a repair: a dead child is reaped and respawned
  by its main loop, which waits in ``poll()`` for up to 1 s (not configurable).
- circus: ``respawn = true``, ``warmup_delay = 0``, ``graceful_timeout = 2``,
  ``copy_env = false``, ``FileStream`` for both streams, and
  ``check_delay`` = ``--circus-check-delay`` (1 s by default: circus's own
  default for an ``Arbiter``; its config file default is 5 s). circus does not
  handle SIGCHLD: it reaps and respawns only in its periodic check, every
  ``check_delay`` seconds, the one documented setting for faster repair; a
  shorter one costs idle CPU (the idle row shows it).

Every config also has a job ``one`` (one ``sleep 3599``) for the "status of one
job" calls; its argv differs from the workload's so the observer never counts it.

Each daemon runs in the foreground as the benchmark's child, in a session of
its own, and gets SIGTERM if the benchmark dies (``PR_SET_PDEATHSIG``).
:meth:`Daemon.stop` tears it down fast and the same way for all three (its
clean shutdown is not what is measured): SIGSTOP, SIGKILL to every child of
it, SIGKILL to the daemon; a child still alive 5 s later is reported.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import observe

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS_VENV = os.path.join(HERE, ".venv-peers")
PEERS_PY = os.path.join(PEERS_VENV, "bin", "python")
PEERS_STAMP = os.path.join(PEERS_VENV, ".installed-stamp")
PINS = ["supervisor==4.3.0", "circus==0.19.0", "pyzmq==27.3.0", "tornado==6.6.1", "psutil==7.2.2"]
GAFFER_BIN = os.path.dirname(sys.executable)
MARK = "GAFFER_BENCH_COMPARE"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GRACEFUL = 2
PR_SET_PDEATHSIG = 1
SLEEP = shutil.which("sleep", path=DEFAULT_PATH) or "/bin/sleep"
ONE_ARGV = [SLEEP, "3599"]
NAMES = ("gaffer", "supervisord", "circus")


T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def ensure_peers_venv() -> None:
    """Create ``bench/.venv-peers`` with :data:`PINS` unless its stamp says it
    already has them."""
    want = "\n".join(PINS) + "\n"
    with contextlib.suppress(OSError), open(PEERS_STAMP) as f:
        if f.read() == want:
            return
    log(f"setting up {PEERS_VENV}: {' '.join(PINS)}")
    python = shutil.which("python3.11") or sys.executable
    if not os.path.exists(PEERS_PY):
        subprocess.run([python, "-m", "venv", PEERS_VENV], check=True)
    subprocess.run(
        [PEERS_PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS],
        check=True,
    )
    with open(PEERS_STAMP, "w") as f:
        f.write(want)


def die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Job:
    """``n`` processes of ``argv``; ``started=False`` makes a job to scale up
    later: 0 processes for gaffer, ``autostart=false`` for supervisord and
    circus (whose ``n`` are then started by one call)."""

    name: str
    argv: list[str]
    n: int
    started: bool = True


class Daemon:
    name = ""

    def __init__(self, workdir: str, jobs: list[Job], mark: str, opts: dict[str, Any]) -> None:
        self.dir = workdir
        self.logs = os.path.join(workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.jobs = [Job("one", ONE_ARGV, 1), *jobs]
        self.mark = mark
        self.opts = opts
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: subprocess.Popen[str] | None = None
        self.known_children: set[int] = set()
        self.write_config()

    # -- per daemon ------------------------------------------------------------

    def write_config(self) -> None:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def address(self) -> str:
        """What peer_client.py connects to."""
        raise NotImplementedError

    def cli(self, what: str) -> list[str]:
        """The CLI's status of everything (``what="all"``) or of job ``one``."""
        raise NotImplementedError

    def log_file(self, job: str, index: int = 0) -> str:
        """Where the stdout of process ``index`` of ``job`` goes."""
        raise NotImplementedError

    def events_address(self) -> str:
        """Where bench/subscribers.py subscribes to events."""
        raise NotImplementedError(f"{self.name}: no event subscription for outside clients")

    # -- common ------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def env(self) -> dict[str, str]:
        return {
            "PATH": DEFAULT_PATH,
            "HOME": self.dir,
            "LANG": "C.UTF-8",
            MARK: self.mark,
        }

    def start(self) -> None:
        out = open(os.path.join(self.dir, "daemon.out"), "wb")  # noqa: SIM115
        with out:
            self.proc = subprocess.Popen(
                self.argv(),
                env=self.env(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.output()}")

    def output(self) -> str:
        with contextlib.suppress(OSError), open(os.path.join(self.dir, "daemon.out")) as f:
            return f.read()[-2000:]
        return ""

    def call(self, **msg: Any) -> dict[str, Any]:
        """One request to this daemon's peer_client.py (started on first use)."""
        if self.client is None:
            script = os.path.join(HERE, "peer_client.py")
            self.client = subprocess.Popen(
                [PEERS_PY, script, "--daemon", self.name, "--address", self.address()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={"PATH": DEFAULT_PATH, MARK: self.mark},
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        assert self.client.stdin is not None and self.client.stdout is not None
        self.client.stdin.write(json.dumps(msg) + "\n")
        self.client.stdin.flush()
        line = self.client.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: peer_client.py exited")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            self.check_alive()
            raise RuntimeError(f"{self.name}: {msg.get('op')}: {reply['error']}")
        return reply

    def remember_children(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.known_children |= set(observe.children(self.pid))

    def stop(self) -> list[int]:
        """Tear the daemon down fast (its clean shutdown is not measured, and
        supervisord takes ~10 s to stop 1,000 processes): SIGSTOP it so it
        forks nothing more, SIGKILL every child of it, SIGKILL it and reap it.
        Returns the pids of any child still alive 5 s later (none expected)."""
        if self.client is not None:
            with contextlib.suppress(OSError, ValueError):
                assert self.client.stdin is not None
                self.client.stdin.close()
            try:
                self.client.wait(5)
            except subprocess.TimeoutExpired:
                self.client.kill()
                self.client.wait()
            self.client = None
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGSTOP)
            self.remember_children()
            for pid in self.known_children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
        self.proc.wait()
        deadline = time.monotonic() + 5.0
        alive = set(self.known_children)
        while alive and time.monotonic() < deadline:
            alive = {pid for pid in alive if observe.cmdline(pid) and _has_mark(pid, self.mark)}
            time.sleep(0.01)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return sorted(alive)


def _has_mark(pid: int, mark: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{MARK}={mark}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def _yaml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a YAML string


class Gaffer(Daemon):
    name = "gaffer"

    def write_config(self) -> None:
        lines = [
            "daemon:",
            f"  loop: {self.opts.get('loop', 'uvloop')}",
            f"  unix_socket: {_yaml_str(self.address())}",
            f"  state_dir: {_yaml_str(os.path.join(self.dir, 'state'))}",
            "  log_level: warning",
            "  logs:",
            "    path: " + _yaml_str(os.path.join(self.logs, "{job}.{index}.{stream}.log")),
            "    max_bytes: 0",
            "jobs:",
        ]
        for job in self.jobs:
            lines += [
                f"  {job.name}:",
                f"    cmd: {_yaml_str(job.argv[0])}",
                f"    args: {json.dumps(job.argv[1:])}",
                f"    numprocesses: {job.n if job.started else 0}",
                "    startsecs: 0",
                f"    graceful_timeout: {GRACEFUL}",
                f"    env: {{{MARK}: {_yaml_str(self.mark)}}}",
            ]
        with open(os.path.join(self.dir, "gafferd.yml"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        return [
            os.path.join(GAFFER_BIN, "gafferd"),
            "-c",
            os.path.join(self.dir, "gafferd.yml"),
            "--no-restore",
        ]

    def address(self) -> str:
        return os.path.join(self.dir, "gafferd.sock")

    def cli(self, what: str) -> list[str]:
        argv = [os.path.join(GAFFER_BIN, "gaffer"), "-H", self.address(), "ps"]
        return argv if what == "all" else [*argv, "one"]

    def log_file(self, job: str, index: int = 0) -> str:
        return os.path.join(self.logs, f"{job}.{index}.stdout.log")

    def events_address(self) -> str:
        return self.address()


class Supervisord(Daemon):
    name = "supervisord"

    def write_config(self) -> None:
        total = sum(j.n for j in self.jobs)
        lines = [
            "[unix_http_server]",
            f"file={self.address()}",
            "[supervisord]",
            f"logfile={os.path.join(self.dir, 'supervisord.log')}",
            "loglevel=warn",
            f"pidfile={os.path.join(self.dir, 'supervisord.pid')}",
            f"childlogdir={self.logs}",
            "nodaemon=true",
            f"minfds={max(1024, 4 * total + 256)}",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl=unix://{self.address()}",
        ]
        for job in self.jobs:
            name = "%(program_name)s" if job.n == 1 else "%(program_name)s_%(process_num)d"
            lines += [
                f"[program:{job.name}]",
                "command=" + " ".join(_ini_quote(a) for a in job.argv),
                f"numprocs={job.n}",
                f"process_name={name}",
                f"autostart={'true' if job.started else 'false'}",
                "autorestart=true",
                "startsecs=0",
                f"stopwaitsecs={GRACEFUL}",
                f"environment={MARK}={self.mark}",
                "stdout_logfile=" + os.path.join(self.logs, f"{job.name}.%(process_num)d.out.log"),
                "stdout_logfile_maxbytes=0",
                "stderr_logfile=" + os.path.join(self.logs, f"{job.name}.%(process_num)d.err.log"),
                "stderr_logfile_maxbytes=0",
            ]
        with open(os.path.join(self.dir, "supervisord.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        conf = os.path.join(self.dir, "supervisord.conf")
        return [os.path.join(PEERS_VENV, "bin", "supervisord"), "-n", "-c", conf]

    def address(self) -> str:
        return os.path.join(self.dir, "supervisord.sock")

    def cli(self, what: str) -> list[str]:
        conf = os.path.join(self.dir, "supervisord.conf")
        argv = [os.path.join(PEERS_VENV, "bin", "supervisorctl"), "-c", conf, "status"]
        return argv if what == "all" else [*argv, "one"]

    def log_file(self, job: str, index: int = 0) -> str:
        return os.path.join(self.logs, f"{job}.{index}.out.log")


def _ini_quote(arg: str) -> str:
    """supervisord splits ``command`` with shlex; ``%`` must be doubled."""
    import shlex

    return shlex.quote(arg).replace("%", "%%")


class Circus(Daemon):
    name = "circus"

    def write_config(self) -> None:
        lines = [
            "[circus]",
            f"endpoint = {self.address()}",
            f"pubsub_endpoint = ipc://{os.path.join(self.dir, 'pubsub.sock')}",
            f"stats_endpoint = ipc://{os.path.join(self.dir, 'stats.sock')}",
            "statsd = false",
            f"check_delay = {self.opts.get('check_delay', 1.0)}",
            "loglevel = warning",
            f"logoutput = {os.path.join(self.dir, 'circusd.log')}",
        ]
        for job in self.jobs:
            lines += [
                f"[watcher:{job.name}]",
                f"cmd = {job.argv[0]}",
                "args = " + " ".join(_ini_quote(a) for a in job.argv[1:]),
                f"numprocesses = {job.n}",
                f"autostart = {'true' if job.started else 'false'}",
                "respawn = true",
                "warmup_delay = 0",
                f"graceful_timeout = {GRACEFUL}",
                "copy_env = false",
                "stdout_stream.class = FileStream",
                f"stdout_stream.filename = {os.path.join(self.logs, job.name + '.out.log')}",
                "stderr_stream.class = FileStream",
                f"stderr_stream.filename = {os.path.join(self.logs, job.name + '.err.log')}",
                f"[env:{job.name}]",
                f"PATH = {DEFAULT_PATH}",
                f"{MARK} = {self.mark}",
            ]
        with open(os.path.join(self.dir, "circus.ini"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        return [os.path.join(PEERS_VENV, "bin", "circusd"), os.path.join(self.dir, "circus.ini")]

    def address(self) -> str:
        return "ipc://" + os.path.join(self.dir, "circus.sock")

    def cli(self, what: str) -> list[str]:
        argv = [os.path.join(PEERS_VENV, "bin", "circusctl"), "--endpoint", self.address()]
        return [*argv, "status"] if what == "all" else [*argv, "status", "one"]

    def log_file(self, job: str, index: int = 0) -> str:
        # One file per watcher: every process of the job writes to it.
        return os.path.join(self.logs, f"{job}.out.log")

    def events_address(self) -> str:
        return "ipc://" + os.path.join(self.dir, "pubsub.sock")


CLASSES: dict[str, type[Daemon]] = {"gaffer": Gaffer, "supervisord": Supervisord, "circus": Circus}


def make(name: str, workdir: str, jobs: list[Job], mark: str, opts: dict[str, Any]) -> Daemon:
    os.makedirs(workdir, exist_ok=True)
    return CLASSES[name](workdir, jobs, mark, opts)


def wait_exit(proc: subprocess.Popen[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

"""The ``gafferd`` command: run a Manager in the foreground from a config file.

It loads the jobs of one YAML file, serves the HTTP API (a unix socket by
default; TCP with ``--bind`` or ``daemon.bind``), prints the jobs' output to
stderr prefixed with ``job.index |`` and the manager's events as log lines, and
on SIGTERM or SIGINT stops every job gracefully and exits 0. Reload,
persistence and systemd integration come with the daemon issue.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import getpass
import importlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from gaffer import __version__
from gaffer.config import ProcessConfig
from gaffer.daemon import ini
from gaffer.daemon.config import DaemonConfig, JobEntry, load_file
from gaffer.daemon.logs import LogFiles
from gaffer.daemon.notify import Notifier
from gaffer.daemon.pidfile import PidFile
from gaffer.daemon.pump import Pump, PumpHandler
from gaffer.daemon.reload import Reloader, ReloadResult
from gaffer.daemon.runs import RunsApp, RunStore
from gaffer.daemon.state import (
    Persistence,
    StateStore,
    kill_handed_over,
    plan,
    stop_previous,
)
from gaffer.errors import ConfigError, GafferError
from gaffer.events import Event
from gaffer.http.listen import Listeners, bind_listeners
from gaffer.http.replay import ReplayBuffer
from gaffer.http.settings import default_state_dir
from gaffer.manager import Manager
from gaffer.paths import default_socket

log = logging.getLogger("gafferd")

MAX_PARTIAL = 64 * 1024
EXIT_OK = 0
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gafferd", description="The gaffer process supervisor.")
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="the YAML config file (default: $GAFFERD_CONFIG, else /etc/gaffer/gafferd.yml as "
        "root or ~/.gaffer/gafferd.yml; else an embedded default with no jobs)",
    )
    p.add_argument("--check", action="store_true", help="validate the config and exit (0 or 2)")
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="the daemon's log level (default: daemon.log_level, else info)",
    )
    p.add_argument(
        "--bind",
        action="append",
        metavar="HOST:PORT",
        help="also serve the API on TCP (repeatable; API keys required unless the config "
        "says require_key: false)",
    )
    p.add_argument(
        "--unix-socket",
        metavar="PATH",
        help=f"the API's unix socket (default: {default_socket()}; 'none' to disable)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"where keys and users are kept (default: {default_state_dir()})",
    )
    p.add_argument(
        "--daemon",
        action="store_true",
        help="run in the background (detached, stdio on /dev/null; use --error-log and "
        "--pidfile); the command returns once the daemon serves",
    )
    p.add_argument(
        "--pidfile",
        metavar="FILE",
        help="write the daemon's pid here (atomically); refuse to start if it names a live process",
    )
    p.add_argument(
        "--error-log",
        metavar="FILE",
        help="write the daemon's own log to FILE instead of stderr",
    )
    p.add_argument(
        "--create-admin-user",
        metavar="NAME",
        help="create an admin user in the state dir's key store and exit; the password is "
        "read from $GAFFERD_ADMIN_PASSWORD, else asked for on the terminal, else read from stdin",
    )
    p.add_argument(
        "--no-restore",
        action="store_true",
        help="start from the config file alone, ignoring the jobs the API had loaded, "
        "unloaded, scaled, started or stopped (kept in the state dir)",
    )
    p.add_argument("--reexec-state", help=argparse.SUPPRESS)
    p.add_argument(
        "--convert",
        metavar="OLD.ini",
        help="print the YAML equivalent of a gaffer 0.5 gafferd.ini and exit",
    )
    p.add_argument("--version", action="version", version=f"gafferd {__version__}")
    return p


class ConsoleApp:
    """Prints process output and lifecycle events to stderr."""

    def __init__(
        self,
        stream: Any = None,
        skip: Callable[[str], bool] | None = None,
        pump: Pump | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.skip = skip  # jobs whose output goes elsewhere (log files)
        # With a pump, output is written by a thread: a full stderr pipe (a stalled
        # reader) must not stop the loop.
        self.pump = pump
        self.manager: Manager | None = None
        self._partial: dict[tuple[int, str], bytes] = {}

    def start(self, loop: Any, manager: Manager) -> None:
        self.manager = manager
        manager.emitter.subscribe("stream", self._output)
        for topic in ("spawn", "exit", "flap", "load", "unload"):
            manager.emitter.subscribe(topic, self._event)

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.emitter.unsubscribe("stream", self._output)
            for topic in ("spawn", "exit", "flap", "load", "unload"):
                self.manager.emitter.unsubscribe(topic, self._event)

    def _output(self, event: Event) -> None:
        # Whole lines only: a line split across two reads is printed once complete
        # (or when it grows past MAX_PARTIAL, or its process ends).
        if event.type != "output":
            return
        d = event.data
        if self.skip is not None and self.skip(d["name"]):
            return
        key = (d["pid"], d["label"])
        data = self._partial.pop(key, b"") + d["data"]
        complete, sep, rest = data.rpartition(b"\n")
        if len(rest) > MAX_PARTIAL:
            complete, rest = data, b""
        elif rest:
            self._partial[key] = rest
        if sep or complete:
            self._print(d["name"], d["index"], complete)

    def _print(self, name: str, index: int, data: bytes) -> None:
        prefix = f"{name}.{index} | "
        lines = data.decode("utf-8", "replace").split("\n")
        text = "".join(f"{prefix}{line}\n" for line in lines)
        if self.pump is not None:
            self.pump.put(text.encode())
        else:
            self.stream.write(text)
            self.stream.flush()

    def _event(self, event: Event) -> None:
        d = event.data
        if event.type == "exit":
            for key in [k for k in self._partial if k[0] == d["pid"]]:
                self._print(d["name"], d["index"], self._partial.pop(key))
            how = f"signal {d['term_signal']}" if d["term_signal"] else f"status {d['exit_status']}"
            log.info(
                "%s: process %s (os pid %s) exited with %s", d["name"], d["pid"], d["os_pid"], how
            )
        elif event.type == "spawn":
            log.info("%s: spawned process %s (os pid %s)", d["name"], d["pid"], d["os_pid"])
        elif event.type == "flap":
            what = "giving up" if d["fatal"] else f"holding it back {d['retry_in']:g}s"
            log.warning("%s[%s]: flapping, %s", d["name"], d["index"], what)
        else:
            log.info("%s: %s", event.type, d.get("name", ""))


QUIT_GRACE = 1.0  # SIGQUIT: seconds before SIGKILL, whatever each job's graceful_timeout


def lock_state_dir(state_dir: str) -> int:
    """Take the state dir for this daemon alone (an flock, released when the
    process exits or execs): a second gafferd on the same state must not touch
    the first one's processes — not even the orphan clean-up at start."""
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(state_dir, "gafferd.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise ConfigError("state_dir", f"{state_dir}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(
            "state_dir", f"{state_dir}: another gafferd is running on this state dir"
        ) from None
    return fd


def load_app(name: str) -> Any:
    """``module:factory`` from ``daemon.apps``: the factory is called with no
    arguments and returns an app (``start(loop, manager)``, ``stop()``)."""
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        return factory()
    except Exception as e:  # an app that cannot be built stops the start, clearly
        raise ConfigError("daemon.apps", f"{name}: {type(e).__name__}: {e}") from None


def find_config(environ: dict[str, str] | None = None) -> str | None:
    """``$GAFFERD_CONFIG``, else /etc/gaffer/gafferd.yml as root or
    ~/.gaffer/gafferd.yml otherwise; None when there is none (embedded default)."""
    env = os.environ if environ is None else environ
    if env.get("GAFFERD_CONFIG"):
        return env["GAFFERD_CONFIG"]
    if os.getuid() == 0:
        candidate = "/etc/gaffer/gafferd.yml"
    else:
        candidate = os.path.join(os.path.expanduser("~"), ".gaffer", "gafferd.yml")
    return candidate if os.path.exists(candidate) else None


def summary(manager: Manager) -> str:
    jobs = manager.jobs()
    procs = len(manager.pids())
    return f"{len(jobs)} job(s), {procs} process(es)"


def run(
    config: DaemonConfig,
    pidfile: PidFile | None = None,
    path: str | None = None,
    started: Callable[[int], None] | None = None,
    pump: Pump | None = None,
    restore: bool = True,
    handed_over: dict[str, Any] | None = None,
) -> int:
    """Run the daemon until it is stopped. ``started`` hears 0 once it serves,
    or the exit code when it cannot start (for ``--daemon``'s parent)."""
    manager = Manager(loop_kind=config.loop)
    notifier = Notifier()
    state_dir = config.http.state_dir
    store = StateStore(os.path.join(state_dir, "state.db")) if state_dir else None
    logfiles = LogFiles(config.logs, config.job_logs)
    listeners: Listeners | None = None
    api: Any = None  # the HTTP app, started once the processes are on their way
    exit_code = EXIT_OK

    def reloaded(result: ReloadResult) -> None:
        if result.ok:
            # where output goes follows the file too: the next write uses it
            logfiles.configure(reloader.config.logs, reloader.config.job_logs)
        notifier.ready(
            f"gafferd {__version__}: {summary(manager)}"
            + ("" if result.ok else f"; last reload failed: {result.error}")
        )

    running = config
    if handed_over is not None and isinstance(handed_over.get("file_jobs"), list):
        # after a re-exec: the jobs run what the previous program had read
        try:
            running = dataclasses.replace(
                config,
                jobs=[
                    JobEntry(j["session"], ProcessConfig.from_dict(j["config"]))
                    for j in handed_over["file_jobs"]
                ],
            )
        except (GafferError, KeyError, TypeError) as e:
            log.warning("re-exec: the previous file's jobs cannot be read (%s)", e)
    reloader = Reloader(manager, running, path, on_start=notifier.reloading, on_done=reloaded)
    reloads: set[asyncio.Future[Any]] = set()
    if state_dir:
        try:
            lock = lock_state_dir(state_dir)
        except GafferError as e:
            log.error("cannot start: %s", e.reason)
            if started is not None:
                started(EXIT_USAGE)
            return EXIT_USAGE
        del lock  # held (by its open fd) until this process exits or execs
    previous = store.load() if store is not None else None
    # After a re-exec the recorded processes are our own children, handed over.
    stopped = stop_previous(previous) if handed_over is None else []
    if stopped:
        log.warning(
            "the previous gafferd left %d process(es) running unsupervised; stopped them "
            "before starting anything: %s",
            len(stopped),
            " ".join(map(str, stopped)),
        )
    runs = None
    if state_dir:
        runs_db = RunStore(os.path.join(state_dir, "runs.db"), config.runs)
        runs = RunsApp(runs_db, adopting=handed_over is not None)
    try:
        if pidfile is not None:
            pidfile.create()
        # Bound now, served later: a busy port or a bad certificate stops the
        # start-up before any process runs.
        listeners = bind_listeners(config.http)
        # The HTTP app starts last (after the processes are spawned: its imports
        # are most of gafferd's start-up time) and so stops first: no request
        # finds the run records or the state store closed.
        apps: list[Any] = [ConsoleApp(skip=logfiles.wants, pump=pump), logfiles]
        apps += [runs] if runs is not None else []
        apps += [load_app(name) for name in config.apps]
        if store is not None:
            apps.append(
                Persistence(
                    store, lambda: [f"{e.session}.{e.config.name}" for e in reloader.config.jobs]
                )
            )
        manager.start(apps=apps)
        # what the API's /events replays to a client that resumes: from the start
        replay = ReplayBuffer(manager.emitter, config.http.replay_size)
    except GafferError as e:
        log.error("cannot start: %s", e.reason)
        if handed_over is not None:
            kill_handed_over(handed_over)  # nobody else would supervise them
        if listeners is not None:
            listeners.close()
        if manager.started:
            manager.loop.run_until_complete(manager.astop())
        manager.loop.close()
        if pidfile is not None:
            pidfile.remove()
        if started is not None:
            started(EXIT_USAGE)
        return EXIT_USAGE
    saved = previous if restore else None
    if previous is not None:
        # when each schedule last fired, even with --no-restore: for catch_up
        manager.restore_schedule_marks(previous.get("schedule_marks"))
    restored = 0
    if handed_over is not None:
        adopted = manager.adopt(handed_over)
        log.info("re-executed in place: adopted %d process(es), nothing restarted", adopted)
        if path is not None:
            # the file may have changed since the jobs were loaded: apply that too
            reloads.add(asyncio.ensure_future(reloader.reload(), loop=manager.loop))
    for item in plan(config.jobs, saved) if handed_over is None else ():
        try:
            # checked as a whole when the file was read: in any order
            manager.load(
                item.entry.config,
                sessionid=item.entry.session,
                start=item.start,
                check_after=False,
            )
            restored += item.restored
        except GafferError as e:
            log.error("%s: %s", item.entry.config.name, e.reason)
    if restored:
        log.info("restored %d job(s) as the API had left them (--no-restore skips this)", restored)
    stop_count = 0

    def on_signal(signum: int) -> None:
        nonlocal stop_count
        stop_count += 1
        name = signal.Signals(signum).name
        if stop_count > 1:
            log.warning("second %s: killing every process group and exiting now", name)
            manager.kill_now()
            if pidfile is not None:
                pidfile.remove()
            os._exit(1)
        notifier.stopping()
        if signum == signal.SIGQUIT:
            log.info("SIGQUIT: stopping every job fast (SIGKILL after %gs)", QUIT_GRACE)
            manager.stop(graceful_timeout=QUIT_GRACE)
        else:
            log.info("%s: stopping every job", name)
            manager.stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        manager.loop.add_signal_handler(sig, on_signal, sig)

    def on_hup() -> None:
        if not manager.active:
            return
        log.info("SIGHUP: reloading %s", path or "(no config file)")
        task = asyncio.ensure_future(reloader.reload(), loop=manager.loop)
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    manager.loop.add_signal_handler(signal.SIGHUP, on_hup)

    def on_usr1() -> None:
        log.info("SIGUSR1: reopening log files")
        logfiles.reopen()

    manager.loop.add_signal_handler(signal.SIGUSR1, on_usr1)

    def reexec() -> None:
        """Hand every process over to a new gafferd in this same PID."""
        try:
            manager.check_handoff()
        except GafferError as e:
            log.warning("not re-executing: %s", e.reason)
            return
        # Everything that can fail is checked before anything is handed over:
        # after the hand-over there is no way back.
        try:
            if path is not None:
                load_file(path)  # the new program must be able to start on it
            if not os.access(sys.executable, os.X_OK):
                raise ConfigError(None, f"{sys.executable} is not executable")
            where = config.http.state_dir or tempfile.gettempdir()
            os.makedirs(where, mode=0o700, exist_ok=True)
            fd, state_path = tempfile.mkstemp(prefix="gafferd-reexec-", suffix=".json", dir=where)
        except (GafferError, OSError) as e:
            log.error("not re-executing: %s", getattr(e, "reason", None) or e)
            return
        log.info("re-executing gafferd in place; every process keeps running")
        notifier.reloading()
        state = manager.handoff()
        # what the running jobs came from, so the new program reloads against it
        state["file_jobs"] = [
            {"session": e.session, "config": e.config.to_dict()} for e in reloader.config.jobs
        ]
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f)
            logfiles.stop()  # what was captured so far reaches its files
            if pump is not None:
                pump.close()
            argv = _argv_without(sys.orig_argv[1:], ("--reexec-state",), ("--daemon",))
            os.execv(sys.executable, [sys.executable, *argv, "--reexec-state", state_path])
        except BaseException as e:
            # Nobody will supervise them: stop them rather than leave orphans.
            log.critical("re-exec failed (%s): stopping every process and exiting", e)
            kill_handed_over(state)
            os._exit(1)

    def on_usr2() -> None:
        log.info("SIGUSR2: re-executing")
        reexec()

    manager.loop.add_signal_handler(signal.SIGUSR2, on_usr2)

    # POST /reexec answers first, then the exec happens on the next loop turns
    def reexec_soon() -> None:
        manager.check_handoff()  # refused now (409), not after the answer
        manager.loop.call_later(0.05, reexec)

    def start_api() -> None:
        """Import and start the HTTP app on the sockets bound at start-up (the
        spawns the loads queued have run by now), then announce."""
        nonlocal api, exit_code
        assert listeners is not None
        if not manager.active:  # stopped (a signal) before it came to this
            listeners.close()
            return
        if manager.spawning:  # the processes first: the server can wait a few turns
            manager.loop.call_soon(start_api)
            return
        from gaffer.http import HttpApp

        api = HttpApp(config.http, listeners=listeners, replay=replay)
        api.reloader = reloader
        api.reopen_logs = logfiles.reopen
        api.runs = runs
        api.reexec = reexec_soon
        try:
            manager.add_app(api)
        except GafferError as e:
            log.error("cannot start: %s", e.reason)
            listeners.close()
            exit_code = EXIT_USAGE
            if started is not None:
                started(EXIT_USAGE)
            manager.stop()
            return
        announce()

    def announce() -> None:
        # From inside the running loop: a signal sent by whoever waits for these
        # lines (or for READY=1) is then sure to be handled, not lost before the
        # loop starts watching for signals.
        for addr in api.addresses:
            where = (
                addr
                if isinstance(addr, str)
                else f"{'https' if config.http.tls else 'http'}://{addr[0]}:{addr[1]}"
            )
            log.info("API listening on %s", where)
        log.info(
            "gafferd %s running %d job(s) on %s",
            __version__,
            len(manager.jobs()),
            type(manager.loop).__module__.split(".")[0],
        )
        # Listeners are up and the config is loaded: tell systemd.
        notifier.ready(f"gafferd {__version__}: {summary(manager)}")
        if started is not None:
            started(EXIT_OK)
        notifier.start_watchdog(manager.loop)

    manager.loop.call_soon(start_api)
    try:
        manager.run()
    finally:
        notifier.close()
        manager.loop.close()
        if pidfile is not None:
            pidfile.remove()
    log.info("stopped")
    return exit_code


def create_admin_user(config: DaemonConfig, username: str) -> int:
    """Add an admin user (and its admin key) to the key store, then exit."""
    password = os.environ.get("GAFFERD_ADMIN_PASSWORD")
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {username}: ")
        else:
            password = sys.stdin.readline().rstrip("\n")
    db = config.http.keys_db
    if db is None:
        print("gafferd: --create-admin-user needs a state dir", file=sys.stderr)
        return EXIT_USAGE

    async def create() -> str:
        from gaffer.http.keystore import AuthStore
        from gaffer.http.permissions import ADMIN

        store = AuthStore(db)
        await store.open()
        try:
            key, _ = await store.create_key(ADMIN, label=f"user:{username}", user=username)
            try:
                await store.create_user(username, password, user_type=0, key=key.id)
            except BaseException:
                await store.delete_key(key.id)
                raise
            return key.id
        finally:
            await store.close()

    try:
        key_id = asyncio.run(create())
    except GafferError as e:
        print(f"gafferd: {e.reason}", file=sys.stderr)
        return EXIT_USAGE
    print(f"admin user {username} created (key {key_id}); log in with GET /auth and HTTP Basic")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Job output and the daemon's log lines reach stderr through one writer
    # thread: a reader that stalls costs dropped (and counted) output, never a
    # blocked loop.
    pump = Pump(_write_stderr)
    if args.convert:
        try:
            sys.stdout.write(ini.convert(args.convert))
        except GafferError as e:
            print(f"gafferd: {e.reason}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    path = args.config or find_config()
    try:
        config = load_file(path) if path else DaemonConfig()
    except GafferError as e:
        print(f"gafferd: {e.reason}", file=sys.stderr)
        if not args.reexec_state:
            return EXIT_USAGE
        # Processes are being handed over: never leave them unsupervised over a
        # broken file. Carry on with the defaults (and the handed-over jobs).
        print("gafferd: re-exec: carrying on with the default settings", file=sys.stderr)
        config = DaemonConfig()
    error_log = args.error_log or config.error_log
    handler: logging.Handler
    if error_log:
        try:
            handler = logging.FileHandler(error_log)
        except OSError as e:
            print(f"gafferd: error log {error_log}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
    else:
        handler = PumpHandler(pump)
    logging.basicConfig(
        level=(args.log_level or config.log_level or "info").upper(),
        format="%(asctime)s [gafferd] %(levelname)s %(message)s",
        handlers=[handler],
    )
    overrides: dict[str, Any] = {}
    if args.bind:
        overrides["bind"] = (*config.http.bind, *args.bind)
    if args.unix_socket:
        overrides["unix_socket"] = None if args.unix_socket == "none" else args.unix_socket
    if args.state_dir:
        overrides["state_dir"] = args.state_dir
    try:
        config.http = dataclasses.replace(config.http, **overrides)
    except GafferError as e:
        print(f"gafferd: {e.reason}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        print(f"{path or '<embedded default>'}: ok, {len(config.jobs)} job(s)")
        return EXIT_OK
    if args.create_admin_user:
        return create_admin_user(config, args.create_admin_user)
    if path is None:
        log.info("no config file found: running on the embedded default (no jobs)")
    pidfile = PidFile(args.pidfile) if args.pidfile else None
    handed_over = None
    if args.reexec_state:
        try:
            with open(args.reexec_state) as f:
                handed_over = json.load(f)
            os.unlink(args.reexec_state)
        except (OSError, ValueError) as e:
            print(f"gafferd: --reexec-state: {e}", file=sys.stderr)
            return EXIT_USAGE

    def detached(started: Callable[[int], None]) -> int:
        pump.after_fork()  # the writer thread does not survive the fork
        return run(config, pidfile, path, started, pump, not args.no_restore)

    code = 1
    try:
        if handed_over is not None:
            code = run(config, pidfile, path, pump=pump, restore=False, handed_over=handed_over)
        elif args.daemon:
            code = daemonize(detached)
        else:
            code = run(config, pidfile, path, pump=pump, restore=not args.no_restore)
    finally:
        if not pump.close():
            # stderr is stuck (nobody reads it): the interpreter could not flush
            # it at exit either, so leave without trying
            os._exit(code)
    return code


def _write_stderr(data: bytes) -> None:
    sys.stderr.buffer.write(data)
    sys.stderr.buffer.flush()


def _argv_without(
    argv: list[str], with_value: tuple[str, ...], flags: tuple[str, ...]
) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in with_value:
            skip = True
        elif arg not in flags and not any(arg.startswith(f + "=") for f in with_value):
            out.append(arg)
    return out


def daemonize(body: Callable[[Callable[[int], None]], int]) -> int:
    """Run ``body`` in a detached grandchild (own session, stdio on /dev/null);
    the calling process exits once it serves (0) or failed to start (2)."""
    read_fd, write_fd = os.pipe()
    if os.fork():
        os.close(write_fd)
        status = os.read(read_fd, 1)  # blocks: nothing else runs in this process
        os.close(read_fd)
        return status[0] if status else EXIT_USAGE
    os.close(read_fd)
    os.setsid()
    if os.fork():
        os._exit(0)  # the grandchild can never reacquire a terminal
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    # The working directory is kept: relative paths in the config and flags
    # (socket, state dir, log templates) mean what they meant at start.

    def started(code: int) -> None:
        os.write(write_fd, bytes([code]))
        os.close(write_fd)

    os._exit(body(started))


if __name__ == "__main__":
    sys.exit(main())

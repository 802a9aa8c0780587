"""The ``gafferd`` command: run a Manager in the foreground from a config file.

It loads the jobs of one YAML file, serves the HTTP API (a unix socket by
default; TCP with ``--bind`` or ``daemon.bind``), prints the jobs' output to
stderr prefixed with ``job.index |`` and the manager's events as log lines, and
on SIGTERM or SIGINT stops every job gracefully and exits 0. Reload,
persistence and systemd integration come with the daemon issue.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from typing import Any

from gaffer import __version__
from gaffer.daemon.config import DaemonConfig, load_file
from gaffer.errors import GafferError
from gaffer.events import Event
from gaffer.http import HttpApp
from gaffer.http.settings import default_socket, default_state_dir
from gaffer.manager import Manager

log = logging.getLogger("gafferd")

MAX_PARTIAL = 64 * 1024
EXIT_OK = 0
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gafferd", description="The gaffer process supervisor.")
    p.add_argument("-c", "--config", metavar="FILE", help="the YAML config file to run")
    p.add_argument("--check", action="store_true", help="validate the config and exit (0 or 2)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the daemon's log level (default: info)",
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
    p.add_argument("--version", action="version", version=f"gafferd {__version__}")
    return p


class ConsoleApp:
    """Prints process output and lifecycle events to stderr."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
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
        self.stream.write("".join(f"{prefix}{line}\n" for line in lines))
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


def run(config: DaemonConfig) -> int:
    manager = Manager(loop_kind=config.loop)
    api = HttpApp(config.http)
    try:
        manager.start(apps=[ConsoleApp(), api])
    except GafferError as e:
        log.error("cannot start: %s", e.reason)
        manager.loop.run_until_complete(manager.astop())
        manager.loop.close()
        return EXIT_USAGE
    for addr in api.addresses:
        where = (
            addr
            if isinstance(addr, str)
            else f"{'https' if config.http.tls else 'http'}://{addr[0]}:{addr[1]}"
        )
        log.info("API listening on %s", where)
    for entry in config.jobs:
        try:
            manager.load(entry.config, sessionid=entry.session)
        except GafferError as e:
            log.error("%s: %s", entry.config.name, e.reason)
    stop_count = 0

    def on_signal(signum: int) -> None:
        nonlocal stop_count
        stop_count += 1
        if stop_count > 1:
            log.warning(
                "second %s: killing every process group and exiting now",
                signal.Signals(signum).name,
            )
            manager.kill_now()
            os._exit(1)
        log.info("%s: stopping every job", signal.Signals(signum).name)
        manager.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        manager.loop.add_signal_handler(sig, on_signal, sig)
    log.info(
        "gafferd %s running %d job(s) on %s",
        __version__,
        len(config.jobs),
        type(manager.loop).__module__.split(".")[0],
    )
    try:
        manager.run()
    finally:
        manager.loop.close()
    log.info("stopped")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s [gafferd] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_file(args.config) if args.config else DaemonConfig()
    except GafferError as e:
        print(f"gafferd: {e.reason}", file=sys.stderr)
        return EXIT_USAGE
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
        print(f"{args.config or '<default>'}: ok, {len(config.jobs)} job(s)")
        return EXIT_OK
    return run(config)


if __name__ == "__main__":
    sys.exit(main())

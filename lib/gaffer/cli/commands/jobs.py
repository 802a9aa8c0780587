"""Commands on jobs and processes: ``ps``/``status``, ``info``, ``load``,
``unload``, ``reload``, ``update``, ``scale``, ``start``, ``stop``,
``restart``, ``kill``, ``run``, ``sessions``, ``jobs``, ``export``, ``check``.

Job files (``load``, ``update``, ``check``) are read here, with gafferd's own
config reader, so that a mistake is reported with its file, line and field
before anything is sent; the reader (PyYAML, the daemon's modules) is imported
only by the commands that read a file.
"""

from __future__ import annotations

import contextlib
import os

from gaffer.cli.context import Failure, UsageError
from gaffer.cli.names import job_name, not_found, resolve_names
from gaffer.cli.output import human_bytes, human_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

    from gaffer.cli.context import Context
    from gaffer.cli.wait import Outcome, Watch
    from gaffer.client.types import JobStatus
    from gaffer.config import ProcessConfig
    from gaffer.daemon.config import JobEntry

    Check = Callable[[dict[str, JobStatus]], Outcome]

# gaffer.config.METADATA_FIELDS, without importing the config module at start
METADATA = ("description", "tags", "version")
SCHEDULE = ("schedule", "timezone", "concurrency", "catch_up")


def add_wait_options(p: argparse.ArgumentParser, default: float | None = None) -> None:
    """--no-wait and --wait-timeout; ``default``: the timeout when none is given
    (None: the wait's own, :data:`gaffer.cli.wait.DEFAULT_TIMEOUT`)."""
    p.add_argument("--no-wait", action="store_true", help="return once the daemon has the request")
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=default,
        metavar="SECONDS",
        help=f"how long to wait for the change (default {60 if default is None else default:g})",
    )


def add_tag_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tag",
        dest="tags",
        action="append",
        default=[],
        metavar="TAG",
        help="only jobs with this tag (repeatable: jobs with any of them)",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    def add(
        name: str, help: str, aliases: Sequence[str] = (), **kw: Any
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, aliases=list(aliases), parents=[common], help=help, **kw
        )
        return p

    p = add(
        "ps",
        "jobs and their processes: state, pids, uptime, CPU, memory, restarts",
        ["status"],
        description="A table of jobs and their processes.",
    )
    p.add_argument("names", nargs="*", metavar="JOB", help="only these jobs or sessions")
    add_tag_option(p)
    p.add_argument("--no-stats", action="store_true", help="skip CPU and memory (faster)")
    p.set_defaults(func=cmd_ps)

    p = add(
        "info",
        "a job's config, slots and exit history, or a process's details",
        ["ps:info"],
        description="A job (`web` is `default.web`) or a process (a number: its gaffer pid).",
    )
    p.add_argument("target", metavar="JOB|PID")
    p.set_defaults(func=cmd_info)

    p = add(
        "load",
        "load the jobs of a file (YAML, JSON or Procfile) and wait until they run",
        description="Load jobs from a gafferd config file (jobs:, include, env_file, "
        "procfile), a file holding one job (name, cmd...) or a list of them, gaffer 0.5's "
        'JSON ({"jobs": [...]}), or a Procfile (a file named Procfile*, or --procfile; '
        "a .env next to it is read, and the session is the directory's name). The file "
        "is checked before anything is loaded.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--session", help="load every job into this session")
    p.add_argument("--procfile", action="store_true", help="read FILE as a Procfile")
    p.add_argument("--nostart", "--no-start", action="store_true", help="load, do not start")
    add_wait_options(p)
    p.set_defaults(func=cmd_load)

    p = add("unload", "stop jobs and remove them", description="Unload jobs (or sessions).")
    p.add_argument("names", nargs="+", metavar="JOB")
    add_wait_options(p)
    p.set_defaults(func=cmd_unload)

    for name, summary in (
        ("restart", "replace every process of jobs, one slot at a time"),
        ("reload", "the same as restart (gaffer 0.5's name)"),
    ):
        p = add(
            name,
            summary,
            description="Replace every process of the jobs (or sessions) with a new one, "
            "slot by slot, the new process first; wait until all are new and running. "
            "`reload` and `restart` are the same (gaffer 0.5 called it reload); a stopped "
            "job is started.",
        )
        p.add_argument("names", nargs="+", metavar="JOB")
        add_wait_options(p)
        p.set_defaults(func=cmd_restart)

    p = add(
        "update",
        "replace loaded jobs' configs (from a file, or --set key=value)",
        description="Replace the config of loaded jobs with the ones in FILE (read as "
        "`load` reads it), or change a job's options with --set; running processes are "
        "rolled over to the new config, and the command returns when that is done.",
    )
    p.add_argument("target", metavar="FILE|JOB")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change an option (a YAML value; env.NAME=VALUE for one variable); repeatable",
    )
    p.add_argument("--session", help="(FILE) the jobs' session")
    p.add_argument("--procfile", action="store_true", help="(FILE) read it as a Procfile")
    add_wait_options(p)
    p.set_defaults(func=cmd_update)

    p = add(
        "scale",
        "set how many processes jobs run: web=3 web+1 web-2",
        ["ps:scale"],
        description="Change the number of processes of jobs and wait until that many run; "
        "exit 1 saying which did not start.",
    )
    p.add_argument("specs", nargs="+", metavar="JOB=N|JOB+N|JOB-N")
    add_wait_options(p)
    p.set_defaults(func=cmd_scale)

    p = add("start", "start jobs and wait until they run", ["ps:start"])
    p.add_argument("names", nargs="+", metavar="JOB")
    add_wait_options(p)
    p.set_defaults(func=cmd_start)

    p = add("stop", "stop jobs' processes and wait until they are gone", ["ps:stop"])
    p.add_argument("names", nargs="+", metavar="JOB")
    add_wait_options(p)
    p.set_defaults(func=cmd_stop)

    p = add(
        "kill",
        "send a signal to a job's processes or to one process",
        ["ps:kill"],
        description="Signal every process of a job, or one process (a number: its gaffer "
        "pid). A supervised process that dies of it is restarted by the daemon.",
    )
    p.add_argument("target", metavar="JOB|PID")
    p.add_argument("signal", nargs="?", default="TERM", metavar="SIG", help="name or number")
    p.set_defaults(func=cmd_kill)

    p = add(
        "run",
        "run a one-off process of a job",
        ["commit"],
        description="Start a one-off process with the job's config (never restarted) and "
        "print its pid; with -f, show its output and exit with its exit status "
        "(125 when gaffer itself fails: refused, unreachable, bad arguments).",
    )
    p.add_argument("job", metavar="JOB")
    p.add_argument(
        "-e", "--env", action="append", default=[], metavar="K=V", help="extra environment"
    )
    p.add_argument("--graceful-timeout", type=float, default=None, metavar="SECONDS")
    p.add_argument("-f", "--follow", action="store_true", help="stream its output until it exits")
    p.add_argument(
        "args", nargs="*", metavar="ARG", help="after --: arguments replacing the job's args"
    )
    p.set_defaults(func=cmd_run)

    p = add("sessions", "the sessions, one per line")
    p.set_defaults(func=cmd_sessions)

    p = add(
        "jobs",
        "the loaded jobs, one per line",
        description="The loaded jobs (of SESSION), one per line; with --long, a table of "
        "their version, tags and description.",
    )
    p.add_argument("session", nargs="?", metavar="SESSION")
    add_tag_option(p)
    p.add_argument(
        "-l", "--long", action="store_true", help="a table: name, version, tags, description"
    )
    p.set_defaults(func=cmd_jobs)

    p = add(
        "export",
        "the loaded jobs' configs, as a file `gaffer load` reads",
        description="Print the configs of the loaded jobs (or of those named) as a "
        "gafferd config (jobs: keyed session.job, default values left out).",
    )
    p.add_argument("names", nargs="*", metavar="JOB")
    p.add_argument("--format", choices=("yaml", "json"), default=None, help="default yaml")
    p.set_defaults(func=cmd_export)

    p = add(
        "check",
        "validate a gafferd config or job file (no daemon needed)",
        description="Read FILE as `load` and gafferd do; exit 0 if it is valid, 2 with "
        "the file, line and field of the first mistake.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--procfile", action="store_true", help="read FILE as a Procfile")
    p.set_defaults(func=cmd_check)


# -- ps ---------------------------------------------------------------------------------


def cmd_ps(ctx: Context, args: argparse.Namespace) -> int:
    names = resolve_names(ctx, args.names)
    jobs = ctx.client.status(names, stats=not args.no_stats, tags=args.tags)
    loaded: list[str] | None = None
    for name in names:
        if not any(j["name"] == name or j["name"].startswith(name + ".") for j in jobs):
            if args.tags:
                # there but without the tag, or not there at all?
                loaded = ctx.client.jobs() if loaded is None else loaded
                if any(j == name or j.startswith(name + ".") for j in loaded):
                    continue
            raise not_found(name)
    out = ctx.out
    if out.json_mode:
        out.json(jobs)
        return 0
    if not jobs:
        out.note(f"no jobs tagged {' or '.join(args.tags)}" if args.tags else "no jobs loaded")
        return 0
    rows: list[list[Any]] = []
    for job in jobs:
        procs = job["processes"]
        if not procs:
            state = "stopped" if not job["active"] else "idle"
            rows.append([job["name"], "-", None, None, state, None, None, None, 0])
        for r in procs:
            idx = "run" if r.get("once") else r.get("index")
            state = r.get("state") or r.get("slot") or "idle"
            if not job["active"] and not r.get("pid"):
                state = "stopped"
            elif r.get("healthy") is False and state == "running":
                state = "unhealthy"  # failing its health check, not yet restarted
            cpu = r.get("cpu")
            rows.append(
                [
                    job["name"],
                    idx,
                    r.get("pid"),
                    r.get("os_pid"),
                    state,
                    human_duration(r.get("uptime")) if r.get("pid") else None,
                    None if cpu is None else f"{cpu:.1f}%",
                    human_bytes(r.get("rss")) if r.get("rss") is not None else None,
                    r.get("restarts", 0),
                ]
            )
    headers = ["JOB", "#", "PID", "OS PID", "STATE", "UPTIME", "CPU", "MEM", "RESTARTS"]
    # too narrow a terminal loses OS PID, then RESTARTS, then UPTIME before names are cut
    out.print(out.table(headers, rows, align="lrrrlrrrr", states=4, optional=(3, 8, 5)))
    return 0


# -- info -------------------------------------------------------------------------------


def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    target: str = args.target
    out = ctx.out
    if target.isascii() and target.isdigit():
        proc = ctx.client.process_info(int(target))
        if out.json_mode:
            out.json(proc)
            return 0
        _print_process(ctx, dict(proc))
        return 0
    info = ctx.client.job_info(job_name(target))
    if out.json_mode:
        out.json(info)
        return 0
    _print_job(ctx, dict(info))
    return 0


def _print_job(ctx: Context, info: dict[str, Any]) -> None:
    out = ctx.out
    config = dict(info.get("config") or {})
    state = "active" if info.get("active") else "stopped"
    out.print(
        f"{out.style(str(info.get('name')), 'bold')}: {out.state(state)}, "
        f"{info.get('ready', 0)}/{info.get('numprocesses', 0)} running, "
        f"{info.get('restarts', 0)} restarts"
    )
    if info.get("waiting"):  # held back by its ``after`` jobs
        out.print(f"  waiting {info['waiting']}")
    description = str(config.get("description") or "").strip()
    if description:
        for line in description.splitlines():
            out.print(f"  {line}")
    out.print(f"  command: {_command_line(config)}")
    if config.get("version"):
        out.print(f"  version: {config['version']}")
    if config.get("tags"):
        out.print(f"  tags: {', '.join(config['tags'])}")
    if config.get("schedule"):
        zone = config.get("timezone") or "local time"
        more = f", concurrency {config.get('concurrency') or 'skip'}"
        more += ", catch up" if config.get("catch_up") else ""
        out.print(f"  schedule: {config['schedule']} ({zone}){more}")
        out.print(f"  next run: {_clock(info.get('next_run'), date=True)}")
    for key, value in _non_default(config).items():
        if key in ("cmd", "args", "numprocesses", *METADATA, *SCHEDULE):
            continue
        if key == "env" and isinstance(value, dict):
            out.print("  env:")
            for k, v in value.items():
                out.print(f"    {k}={v}")
            continue
        out.print(f"  {key}: {_scalar(value)}")
    slots = info.get("slots") or []
    if slots:
        out.print()
        rows = [
            [
                s.get("index"),
                s.get("status"),
                s.get("pid"),
                s.get("state"),
                s.get("restarts", 0),
                _clock(s.get("next_start")),
            ]
            for s in slots
        ]
        headers = ["SLOT", "STATUS", "PID", "STATE", "RESTARTS", "NEXT START"]
        out.print(out.table(headers, rows, align="rlrlrl", states=1))
    history = info.get("history") or []
    if history:
        out.print()
        out.print(f"last {min(len(history), 10)} exits:")
        rows = []
        for h in history[-10:]:
            if h.get("error"):
                how = f"error: {h['error']}"
            elif h.get("term_signal"):
                how = f"signal {h['term_signal']}"
            else:
                how = f"status {h.get('exit_status')}"
            rows.append(
                [
                    _clock(h.get("time")),
                    "run" if h.get("once") else h.get("index"),
                    h.get("pid"),
                    how,
                    human_duration(h.get("uptime")),
                    h.get("reason"),
                    h.get("outcome"),
                ]
            )
        headers = ["TIME", "SLOT", "PID", "EXIT", "UPTIME", "REASON", "THEN"]
        out.print(out.table(headers, rows, align="lrrlrll"))


def _print_process(ctx: Context, p: dict[str, Any]) -> None:
    out = ctx.out
    kind = "one-off run" if p.get("commited") else f"slot {p.get('index')}"
    out.print(
        f"{out.style('process ' + str(p.get('pid')), 'bold')} of {p.get('name')} ({kind}): "
        f"{out.state(p.get('state'))}" + (f" ({p['reason']})" if p.get("reason") else "")
    )
    command = " ".join([str(p.get("cmd", "")), *(str(a) for a in p.get("args") or [])])
    lines: list[tuple[str, Any]] = [
        ("os pid", p.get("os_pid")),
        ("command", command),
        ("uptime", human_duration(p.get("uptime"))),
        ("started", _clock(p.get("create_time"), date=True)),
        ("uid/gid", f"{_scalar(p.get('uid'))}/{_scalar(p.get('gid'))}"),
        ("output", ", ".join(p.get("redirect_output") or []) or "-"),
        ("input", "stdin" if p.get("redirect_input") else "-"),
    ]
    if p.get("custom_streams"):
        lines.append(("streams", ", ".join(p["custom_streams"])))
    lines.append(("ready", p.get("ready")))
    if p.get("ready_error"):
        lines.append(("ready check", p["ready_error"]))
    if p.get("healthy") is not None:
        health = "healthy" if p["healthy"] else f"unhealthy: {p.get('health_error')}"
        lines.append(("health", health))
    if p.get("status"):  # its own words, by sd_notify STATUS=
        lines.append(("status", p["status"]))
    if p.get("main_pid") and p.get("main_pid") != p.get("os_pid"):
        lines.append(("main pid", p["main_pid"]))
    if p.get("notify_socket"):
        watchdog = p.get("watchdog_usec")
        more = f" (watchdog {watchdog / 1e6:g}s)" if watchdog else ""
        lines.append(("notify socket", p["notify_socket"] + more))
    if p.get("exit_status") is not None:
        lines.append(("exit status", p["exit_status"]))
    if p.get("term_signal"):
        lines.append(("killed by", p.get("term_signal_name") or p["term_signal"]))
    for key, value in lines:
        out.print(f"  {key}: {_scalar(value)}")
    env = p.get("env") or {}
    if env:
        out.print("  env:")
        for k in sorted(env):
            out.print(f"    {k}={env[k]}")


def _command_line(config: dict[str, Any]) -> str:
    import shlex

    args = config.get("args") or []
    line = " ".join([str(config.get("cmd", "")), *(shlex.quote(str(a)) for a in args)])
    return f"sh -c {shlex.quote(line)}" if config.get("shell") else line


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _clock(t: float | None, date: bool = False) -> str:
    if not t:
        return "-"
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S", time.localtime(t))


def _non_default(config: dict[str, Any]) -> dict[str, Any]:
    """The options of a job config (as the daemon reports it) that differ from
    their default, ``cmd`` always; ``name`` left out."""
    from gaffer.config import ProcessConfig

    defaults = ProcessConfig(name=config.get("name") or "x", cmd=config.get("cmd") or "x").to_dict()
    return {
        k: v
        for k, v in config.items()
        if k != "name" and (k == "cmd" or k not in defaults or defaults[k] != v)
    }


# -- reading job files ------------------------------------------------------------------


def is_procfile(path: str) -> bool:
    return os.path.basename(path).startswith("Procfile")


def read_jobs(
    path: str, session: str | None = None, procfile: bool = False
) -> tuple[list[JobEntry], list[str]]:
    """The jobs of a file (see ``gaffer load --help`` for the forms), checked
    as gafferd checks its own config: ``(entries, remarks)``. Raises
    ConfigError naming the file, the line and the field."""
    from gaffer.errors import ConfigError

    if session is not None and (not session or "." in session or "/" in session):
        raise UsageError(f"--session: bad session name {session!r} (no '.' or '/')")
    if procfile or is_procfile(path):
        return _read_procfile(path, session), []
    from gaffer.daemon import config as dc

    if path.endswith(".ini"):  # gaffer 0.5's config
        cfg = dc.load_file(path)
        return _in_session(cfg.jobs, session), []
    text = dc.read_text(path)
    doc = _load_doc(text, path)
    base_dir = os.path.dirname(os.path.abspath(path))
    single = isinstance(doc, dict) and ("cmd" in doc or "name" in doc)
    if isinstance(doc, dict) and not (single or isinstance(doc.get("jobs"), list)):
        # gafferd's own form (jobs:, include, env_file, procfile): read as gafferd does
        cfg = dc.load_file(path)
        remarks = [
            f"{name}: logs: is a setting of gafferd's config; not applied by load"
            for name in cfg.job_logs
        ]
        if "daemon" in doc:
            remarks.append(f"{path}: daemon: settings are not applied by load")
        return _in_session(cfg.jobs, session), remarks
    if single:
        items = [(doc, "")]
    elif isinstance(doc, dict):
        # gaffer 0.5's JSON: {"jobs": [{"name": ..., "cmd": ...}, ...]}
        items = [(item, f"jobs[{i}]") for i, item in enumerate(doc["jobs"])]
    elif isinstance(doc, list):
        items = [(item, f"[{i}]") for i, item in enumerate(doc)]
    else:
        raise ConfigError(
            None,
            "expected gafferd's jobs: mapping, a job (name, cmd...) or a list of jobs",
            source=path,
            line=1,
        )
    from gaffer.config import split_name

    line_of = dc.line_of
    entries: list[JobEntry] = []
    seen: dict[tuple[str, str], str] = {}
    for item, where in items:
        line = getattr(item, "line", None)  # None: plain JSON, no line numbers
        if not isinstance(item, dict):
            raise ConfigError(
                where or None, "a job must be a mapping (name, cmd...)", source=path, line=line
            )
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"{where}.name" if where else "name",
                "is required (a job name: web or session.web)",
                source=path,
                line=line_of(item, ["name"]),
            )
        job_session, job = split_name(name)
        options = dict(item)
        options.pop("name")
        try:
            env_files = options.pop("env_file", None)
            if env_files is not None:
                env = dc.read_env_files(env_files, base_dir)
                if options.get("env") is not None and not isinstance(options["env"], dict):
                    raise ConfigError("env", f"must be a mapping, got {options['env']!r}")
                options["env"] = {**env, **(options.get("env") or {})}
            config = _job_config({**options, "name": job})
        except ConfigError as e:
            top = (e.field or "").split(".")[0].split("[")[0]
            full = ".".join(p for p in (where, e.field) if p) or None
            raise ConfigError(
                full, e.bare_reason, source=path, line=line_of(item, [top]) if top else line
            ) from None
        key = (session or job_session, job)
        if key in seen:
            raise ConfigError(where or None, f"the same job as {seen[key]}", source=path, line=line)
        seen[key] = f"{where or 'the job'} at {path}:{line}"
        entries.append(dc.JobEntry(key[0], config))
    return entries, []


def _job_config(options: dict[str, Any]) -> ProcessConfig:
    from gaffer.config import ProcessConfig

    config = ProcessConfig.from_dict(options)
    config.check_env()
    return config


def _load_doc(text: str, path: str) -> Any:
    """The document, its mappings remembering their lines (the daemon's YAML
    loader); JSON is YAML, but a JSON file is checked as JSON first so that its
    mistakes are worded as JSON's."""
    from gaffer.daemon.config import load_yaml
    from gaffer.errors import ConfigError

    if path.endswith(".json"):
        import json

        try:
            plain = json.loads(text)
        except ValueError as e:
            msg = getattr(e, "msg", str(e))
            raise ConfigError(
                None, f"invalid JSON: {msg}", source=path, line=getattr(e, "lineno", None)
            ) from None
        try:
            return load_yaml(text, path)
        except ConfigError:
            return plain  # valid JSON that YAML will not read (tabs): no line numbers
    return load_yaml(text, path)


def _in_session(entries: list[JobEntry], session: str | None) -> list[JobEntry]:
    if session is None:
        return entries
    from gaffer.daemon.config import JobEntry

    out = [JobEntry(session, e.config) for e in entries]
    names = [e.config.name for e in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise UsageError(f"--session {session}: two jobs named {dup!r} would be in it")
    return out


def procfile_session(path: str) -> str:
    """A Procfile's jobs go in a session named after its directory, as foreman
    and honcho name the app."""
    import re

    directory = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return re.sub(r"[^A-Za-z0-9_-]+", "_", directory).strip("_") or "procfile"


def _read_procfile(path: str, session: str | None) -> list[JobEntry]:
    """A Procfile as gafferd's ``procfile:`` reads it, then as foreman runs it:
    in its directory, with the ``.env`` next to it, ``$PORT`` 5000, 5100...
    (or from the ``.env``'s PORT up)."""
    from gaffer.daemon import config as dc
    from gaffer.errors import ConfigError

    dc.read_text(path)  # unreadable: said as of any job file
    directory = os.path.dirname(path)
    session = session or procfile_session(path)
    configs = dc.read_procfile(path)
    if not configs:
        raise ConfigError(None, "no processes (expected 'name: command' lines)", source=path)
    dotenv = os.path.join(directory, ".env")
    env: dict[str, str] = {}
    if os.path.exists(dotenv):
        try:
            env = dc.read_env_files(".env", directory)
        except ConfigError as e:
            raise ConfigError(None, e.bare_reason, source=dotenv) from None
    base = env.get("PORT", "5000")
    if not base.isdigit():
        raise ConfigError("PORT", f"must be a port number, got {base!r}", source=dotenv)
    cwd = os.path.abspath(directory or ".")
    out = []
    for i, config in enumerate(configs):
        port = str(int(base) + 100 * i)
        config = config.replace(env={**env, "PORT": port}, cwd=config.cwd or cwd)
        out.append(dc.JobEntry(session, config))
    return out


EXIT_BAD_FILE = 2


def _read_file(
    ctx: Context, path: str, session: str | None, procfile: bool
) -> tuple[list[JobEntry], list[str]] | None:
    """The file's jobs; None once a mistake in it is reported (exit 2, like
    any bad input, but without the usage hint: the message says it all)."""
    from gaffer.errors import ConfigError

    try:
        return read_jobs(path, session, procfile)
    except ConfigError as e:
        if ctx.out.json_mode:
            ctx.out.json({"error": str(e), "errno": EXIT_BAD_FILE})
        ctx.out.error(str(e))
        return None


# -- waiting ----------------------------------------------------------------------------


def _change(
    ctx: Context,
    names: Sequence[str],
    act: Callable[[str], object],
    check: Callable[[str], Check | None],
    verbs: tuple[str, str],
    extra: dict[str, Any] | None = None,
    unwaited: str | None = None,
) -> int:
    """A change to jobs, waited for: the watch opened first, then ``act`` on
    each job, then the wait until ``check(job)`` of each is done (a job whose
    check is None is not waited for), then the report. ``verbs``: what the
    report lists them as and what the wait shows (``("stopped",
    "stopping")``); ``unwaited``: what a job not waited for is (default: the
    second verb)."""
    from gaffer.cli.wait import Watch

    done, doing = verbs
    with Watch(ctx, names) as watch:
        for name in names:
            act(name)
        checks: dict[str, Check] = {}
        if watch.enabled:
            checks = {n: c for n in names if (c := check(n)) is not None}
        outcome, outs = _wait(watch, checks, doing)
    return _report(ctx, done, names, outcome, outs, unwaited or doing, extra)


def _wait(watch: Watch, checks: dict[str, Check], what: str) -> tuple[Outcome, dict[str, Outcome]]:
    """Wait until every check is done: the overall outcome, and each job's."""
    from gaffer.cli.wait import Outcome

    last: dict[str, Outcome] = {}

    def check(jobs: dict[str, JobStatus]) -> Outcome:
        last.clear()
        last.update({n: c(jobs) for n, c in checks.items()})
        done = all(o.done for o in last.values())
        return Outcome(
            done,
            done and all(o.ok for o in last.values()),
            ", ".join(f"{n}: {o.progress}" for n, o in last.items()),
            [f for o in last.values() for f in o.failures],
        )

    if not checks:
        return Outcome(True, True, "nothing to wait for"), {}
    return watch.until(check, what), last


def _report(
    ctx: Context,
    key: str,
    names: Sequence[str],
    outcome: Outcome,
    outs: dict[str, Outcome],
    unwaited: str,
    extra: dict[str, Any] | None = None,
) -> int:
    """What a change came to: a line per job (or --json), the failures on
    stderr; exit 1 unless all went as asked."""
    out = ctx.out
    waited = bool(outs)
    if out.json_mode:
        out.json(
            {
                key: list(names),
                **(extra or {}),
                "ok": outcome.ok,
                "waited": waited,
                "status": {n: o.progress for n, o in outs.items()},
                "failures": [] if outcome.ok else _with_last_exits(ctx, outcome.failures),
            }
        )
    else:
        for n in names:
            o = outs.get(n)
            out.print(f"{n}: {o.progress if o is not None else unwaited}")
        if not outcome.ok:
            for failure in _with_last_exits(ctx, outcome.failures):
                out.error(failure)
    return 0 if outcome.ok else 1


def _with_last_exits(ctx: Context, failures: list[str]) -> list[str]:
    """``web.1 did not start (fatal)``, and how its last process ended: the
    status rows of empty slots do not say."""
    import re

    pattern = re.compile(r"(.+)\.(\d+) did not start ")
    found = [(m, f) for f in failures if (m := pattern.match(f)) is not None]
    last: dict[tuple[str, int], dict[str, Any]] = {}
    for name in dict.fromkeys(m.group(1) for m, _ in found if m is not None):
        try:
            history = ctx.client.job_info(name).get("history") or []
        except Exception:  # gone meanwhile: say what is known
            continue
        for entry in history:
            if not entry.get("once"):
                last[name, int(entry.get("index", -1))] = entry
    out = []
    for failure in failures:
        m = pattern.match(failure)
        h = last.get((m.group(1), int(m.group(2)))) if m is not None else None
        if h is not None:
            if h.get("error"):
                how = f"could not start: {h['error']}"
            elif h.get("term_signal"):
                how = f"killed by signal {h['term_signal']}"
            else:
                how = f"exited with status {h.get('exit_status')}"
            failure += f"; last run {how} after {h.get('uptime', 0):g}s"
            # and its last words, which most often say why
            output = h.get("output") or {}
            said = (output.get("stderr") or []) or (output.get("stdout") or [])
            if said:
                failure += f": {said[-1].strip()[:200]}"
        out.append(failure)
    return out


def _running_unless_stopped(name: str, want: int | None = None) -> Check:
    """Running as wanted; a stopped job is done as it is (it runs nothing)."""
    from gaffer.cli.wait import Outcome, running

    inner = running(name, want)

    def check(jobs: dict[str, JobStatus]) -> Outcome:
        job = jobs.get(name)
        if job is not None and not job["active"]:
            return Outcome(True, True, f"stopped ({job['numprocesses']} wanted)")
        return inner(jobs)

    return check


# -- load, unload, update ---------------------------------------------------------------


def cmd_load(ctx: Context, args: argparse.Namespace) -> int:
    from gaffer.client.errors import GafferClientError

    read = _read_file(ctx, args.file, args.session, args.procfile)
    if read is None:
        return EXIT_BAD_FILE
    entries, remarks = read
    for remark in remarks:
        ctx.out.note(remark)
    if not entries:
        raise UsageError(f"{args.file}: no jobs in it")
    client = ctx.client
    names = [f"{e.session}.{e.config.name}" for e in entries]
    loaded = set(client.jobs())
    clash = [n for n in names if n in loaded]
    if clash:
        raise Failure(
            f"{', '.join(clash)}: already loaded; nothing loaded "
            f"(`gaffer update {args.file}` replaces loaded jobs)"
        )
    by_name = dict(zip(names, entries, strict=True))
    starts = {n: e.config.start and not args.nostart for n, e in by_name.items()}
    done: list[str] = []

    def load(name: str) -> None:
        entry = by_name[name]
        client.load(entry.config.to_dict(), session=entry.session, start=starts[name])
        done.append(name)

    try:
        return _change(
            ctx,
            names,
            load,
            lambda n: _running_unless_stopped(n) if starts[n] else None,
            ("loaded", "starting"),
            unwaited="loaded",
        )
    except GafferClientError:
        if len(done) < len(names):
            # all of the file or none of it: take back what went in before the refusal
            for name in done:
                with contextlib.suppress(GafferClientError):
                    client.unload(name)
        raise


def cmd_unload(ctx: Context, args: argparse.Namespace) -> int:
    from gaffer.cli.wait import gone

    names = resolve_names(ctx, args.names, expand=True)
    return _change(ctx, names, ctx.client.unload, gone, ("unloaded", "unloading"))


def cmd_update(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client
    if args.sets:
        name = job_name(args.target)
        info = client.job_info(name)
        config = dict(info.get("config") or {})
        for item in args.sets:
            _apply_set(config, item)
        updates = [(name, config, bool(info.get("active")))]
    else:
        if not os.path.exists(args.target):
            raise UsageError(
                f"update: {args.target}: no such file (to change a job's options: "
                f"gaffer update JOB --set KEY=VALUE)"
            )
        read = _read_file(ctx, args.target, args.session, args.procfile)
        if read is None:
            return EXIT_BAD_FILE
        entries, remarks = read
        for remark in remarks:
            ctx.out.note(remark)
        updates = [
            (f"{e.session}.{e.config.name}", e.config.to_dict(), e.config.start) for e in entries
        ]
    _allow_a_wait(ctx, args)
    by_name = {n: (config, start) for n, config, start in updates}

    def update(name: str) -> None:
        config, start = by_name[name]
        if args.no_wait:
            from gaffer.client.sync import job_path

            client.request("PUT", job_path(name), {**config, "start": start})
        else:
            client.update(name, config, start=start)

    return _change(ctx, list(by_name), update, _running_unless_stopped, ("updated", "updating"))


def _apply_set(config: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--set: expected KEY=VALUE, got {item!r}")
    import yaml

    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (dict, list)) or value is None:
        pass
    elif not isinstance(value, (bool, int, float)) or key in ("description", "version"):
        value = raw  # dates and the like, and text options: the text as written
    head, dot, rest = key.partition(".")
    if dot:
        if head not in ("env", "flapping", "backoff"):
            raise UsageError(f"--set: {head} has no sub-options (env.NAME, flapping.X, backoff.X)")
        inner = config.get(head)
        inner = dict(inner) if isinstance(inner, dict) else {}
        inner[rest] = raw if head == "env" else value
        config[head] = inner
        return
    if head == "name":
        raise UsageError("--set: a job's name cannot change (load it under the new name)")
    config[head] = value


# -- scale, start, stop, restart --------------------------------------------------------


def parse_scale(spec: str) -> tuple[str, str]:
    """``web=3`` → ``("default.web", "=3")``; also ``+N`` and ``-N``."""
    import re

    m = re.fullmatch(r"(.+?)([=+-])(\d+)", spec.strip())
    if m is None:
        raise UsageError(f"scale: expected JOB=N, JOB+N or JOB-N, got {spec!r}")
    return job_name(m.group(1)), m.group(2) + m.group(3)


def cmd_scale(ctx: Context, args: argparse.Namespace) -> int:
    specs = [parse_scale(s) for s in args.specs]
    names = list(dict.fromkeys(n for n, _ in specs))
    hows = {n: [how for m, how in specs if m == n] for n in names}
    scaled: dict[str, int] = {}

    def scale(name: str) -> None:
        for how in hows[name]:
            scaled[name] = ctx.client.scale(name, how)

    return _change(
        ctx,
        names,
        scale,
        lambda n: _running_unless_stopped(n, scaled[n]),
        ("scaled", "scaling"),
        {"numprocesses": scaled},
    )


def cmd_start(ctx: Context, args: argparse.Namespace) -> int:
    names = resolve_names(ctx, args.names, expand=True)
    return _change(
        ctx, names, ctx.client.start_job, _running_unless_stopped, ("started", "starting")
    )


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    from gaffer.cli.wait import stopped

    names = resolve_names(ctx, args.names, expand=True)
    return _change(ctx, names, ctx.client.stop_job, stopped, ("stopped", "stopping"))


def _allow_a_wait(ctx: Context, args: argparse.Namespace) -> None:
    """The daemon answers once a roll-over is done: allow its request as long
    as a wait."""
    client = ctx.client
    if args.wait_timeout is not None:
        client.target.timeout = max(client.target.timeout or 0, args.wait_timeout)
    elif client.target.timeout is not None:
        from gaffer.cli.wait import DEFAULT_TIMEOUT

        client.target.timeout = max(client.target.timeout, DEFAULT_TIMEOUT)


def cmd_restart(ctx: Context, args: argparse.Namespace) -> int:
    from gaffer.cli.wait import running

    names = resolve_names(ctx, args.names, expand=True)
    # the processes to see replaced; read before the watch opens, which is
    # no loss: one that ends meanwhile is as replaced as one restarted
    old: dict[str, set[int]] = {n: set() for n in names}
    if not args.no_wait:
        for job in ctx.client.status(names, stats=False):
            old[job["name"]] = {p for r in job["processes"] if (p := r.get("pid"))}
    _allow_a_wait(ctx, args)

    def restart(name: str) -> None:
        # Waited for by the daemon itself: a new process that fails to start
        # ends the roll at once with the daemon's reason (exit 1), the old
        # ones kept — no waiting out the timeout for processes that won't come.
        ctx.client.restart_job(name, wait=not args.no_wait)

    return _change(
        ctx,
        names,
        restart,
        lambda n: running(n, replacing=old[n]),
        ("restarted", "restarting"),
    )


# -- kill, run --------------------------------------------------------------------------


def cmd_kill(ctx: Context, args: argparse.Namespace) -> int:
    from gaffer.errors import BadRequest
    from gaffer.signals import parse_signal, signal_name

    try:
        signum = parse_signal(args.signal)
    except BadRequest as e:
        raise UsageError(f"kill: {e.reason}") from None
    sig = signal_name(signum).removeprefix("SIG")
    target: str = args.target
    out = ctx.out
    if target.isascii() and target.isdigit():
        ctx.client.signal_process(int(target), signum)
        what: dict[str, Any] = {"pid": int(target)}
        text = f"process {int(target)}"
    else:
        name = job_name(target)
        ctx.client.signal_job(name, signum)
        what = {"job": name}
        text = f"{name} (every process)"
    out.result({**what, "signal": sig, "signum": signum}, f"sent SIG{sig} to {text}")
    return 0


def _env_pairs(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or "\0" in item:
            raise UsageError(f"--env: expected NAME=VALUE, got {item!r}")
        env[key] = value
    return env


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    name = job_name(args.job)
    env = _env_pairs(args.env)
    run_args = args.args or None
    client = ctx.client
    out = ctx.out
    if args.follow:
        # its exit status is the run's: gaffer's own failures get 125 (as docker run's)
        args.own_failure = 125
    else:
        one_off = client.commit(name, args.graceful_timeout, env, run_args)
        out.result({"name": name, "pid": one_off}, str(one_off))
        return 0
    labels = set((client.job_info(name).get("config") or {}).get("redirect_output") or [])
    # Subscribed before the run starts, so that nothing it writes (nor its
    # exit) can come before we listen: a short run is gone before a
    # /streams/<pid> request could be made.
    events = client.events(["stream", "exit"], names=[name], timeout=None)
    pid: int | None = None
    try:
        pid = client.commit(name, args.graceful_timeout, env, run_args)
        if not out.json_mode:
            out.note(f"{name}: running as process {pid}")
        return _follow(ctx, events, pid, labels)
    except KeyboardInterrupt:
        if pid is not None:
            out.note(f"stopping process {pid}")
            with contextlib.suppress(Exception):  # already gone, or the daemon with it
                client.stop_process(pid)
        return 130
    finally:
        events.close()


def _follow(ctx: Context, events: Any, pid: int, labels: set[str]) -> int:
    import sys

    from gaffer.client.errors import ConnectionError

    out = ctx.out
    exit_event: dict[str, Any] | None = None
    try:
        for ev in events:
            if ev.get("pid") != pid:
                continue
            kind = ev.get("event")
            if kind == "output":
                data = str(ev.get("data", ""))
                if out.json_mode:
                    out.json({"pid": pid, "label": ev.get("label"), "data": data})
                else:
                    stream = sys.stderr if ev.get("label") == "stderr" else sys.stdout
                    stream.write(data)
                    stream.flush()
            elif kind == "eof":
                labels.discard(str(ev.get("label")))
            elif kind == "exit":
                exit_event = dict(ev)
                # what it wrote last may still be in the pipes: a moment for it
                events.settimeout(5.0)
            if exit_event is not None and not labels:
                break
    except ConnectionError:
        if exit_event is None:
            raise
    if exit_event is None:
        raise Failure("the daemon closed the event stream before the process ended")
    status = exit_event.get("exit_status")
    signum = exit_event.get("term_signal")
    error = exit_event.get("error")
    if out.json_mode:
        out.json(
            {
                "pid": pid,
                "exit_status": status,
                "term_signal": signum,
                **({"error": error} if error else {}),
            }
        )
    if error:
        if not out.json_mode:
            out.error(f"process {pid} could not start: {error}")
        return 127
    if signum:
        if not out.json_mode:
            out.note(f"process {pid} was killed by signal {signum}")
        return 128 + int(signum)
    return int(status) if isinstance(status, int) else 1


# -- sessions, jobs, export, check ------------------------------------------------------


def cmd_sessions(ctx: Context, args: argparse.Namespace) -> int:
    sessions = ctx.client.sessions()
    ctx.out.result(sessions, "\n".join(sessions) or None)
    return 0


def cmd_jobs(ctx: Context, args: argparse.Namespace) -> int:
    jobs = ctx.client.jobs(args.session, tags=args.tags)
    if not args.long:
        ctx.out.result(jobs, "\n".join(jobs) or None)
        return 0
    wanted = set(jobs)
    scope = [args.session] if args.session else []
    rows: list[dict[str, Any]] = [
        {
            "name": j["name"],
            "version": j.get("version", ""),
            "tags": j.get("tags", []),
            "description": j.get("description", ""),
        }
        for j in ctx.client.status(scope, stats=False, tags=args.tags)
        if j["name"] in wanted  # not one loaded since
    ]
    out = ctx.out
    if out.json_mode:
        out.json(rows)
        return 0
    table = [
        [
            r["name"],
            r["version"] or "-",
            ",".join(r["tags"]) or "-",
            # a table row is one line: a paragraph shows its first
            (r["description"].strip() or "-").split("\n", 1)[0],
        ]
        for r in rows
    ]
    if table:
        out.print(out.table(["NAME", "VERSION", "TAGS", "DESCRIPTION"], table))
    return 0


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client
    names = resolve_names(ctx, args.names, expand=True) if args.names else client.jobs()
    jobs: dict[str, Any] = {}
    for name in names:
        info = client.job_info(name)
        config = dict(info.get("config") or {})
        # what runs now: a scale changes the job's size, not its loaded config
        if "numprocesses" in info:
            config["numprocesses"] = info["numprocesses"]
        jobs[name] = _non_default(config)
    # --json is machine-readable output whatever --format says
    fmt = "json" if ctx.out.json_mode else args.format or "yaml"
    if fmt == "json":
        ctx.out.json({"jobs": jobs})
        return 0
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # a description of several lines reads as written (PyYAML falls back
        # to quoting when a block cannot hold the text exactly)
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text_block)
    text = yaml.dump(
        {"jobs": jobs},
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )
    ctx.out.stream.write(text)
    return 0


def cmd_check(ctx: Context, args: argparse.Namespace) -> int:
    read = _read_file(ctx, args.file, None, args.procfile)
    if read is None:
        return EXIT_BAD_FILE
    entries = read[0]
    names = [f"{e.session}.{e.config.name}" for e in entries]
    ctx.out.result(
        {"ok": True, "file": args.file, "jobs": names},
        f"ok: {len(names)} job{'s' if len(names) != 1 else ''}",
    )
    return 0

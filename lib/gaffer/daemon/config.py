"""Read gafferd's YAML config file into validated job configs.

The file has two top-level keys: ``daemon:`` (settings of the daemon itself) and
``jobs:``, a mapping from job name (``web`` or ``session.job``) to that job's
options. Every error names the file, the line and the field::

    etc/gafferd.yml:14: jobs.web.numprocesses: must be an integer ≥ 0, got -1
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from gaffer.config import ProcessConfig, check_dependencies, dependency_names, split_name
from gaffer.daemon.logs import LogSettings
from gaffer.daemon.runs import DEFAULT_KEEP, DEFAULT_MAX_AGE, RunsSettings
from gaffer.errors import ConfigError
from gaffer.http.settings import HttpSettings, TlsSettings, default_state_dir
from gaffer.loop import LOOP_KINDS
from gaffer.paths import default_socket


class _Map(dict[Any, Any]):
    """A mapping that remembers the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise ConfigError(
                None,
                f"a key must be a plain value, not {type(key).__name__}",
                line=key_node.start_mark.line + 1,
            )
        if key in out:
            raise ConfigError(str(key), "duplicate key", line=key_node.start_mark.line + 1)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


@dataclass
class JobEntry:
    session: str
    config: ProcessConfig


@dataclass
class DaemonConfig:
    source: str | None = None
    loop: str | None = None
    jobs: list[JobEntry] = field(default_factory=list)
    http: HttpSettings = field(default_factory=lambda: HttpSettings(state_dir=default_state_dir()))
    # job output: daemon-wide log files (None: the daemon's stderr), and per-job
    # overrides (None there: stderr for that job)
    logs: LogSettings | None = None
    job_logs: dict[str, LogSettings | None] = field(default_factory=dict)
    # the daemon's own log (flags override), and extra apps ("module:factory")
    log_level: str | None = None
    error_log: str | None = None
    apps: list[str] = field(default_factory=list)
    runs: RunsSettings = field(default_factory=RunsSettings)


DAEMON_KEYS = {
    "loop",
    "unix_socket",
    "bind",
    "require_key",
    "tls",
    "cors_origins",
    "state_dir",
    "max_body_size",
    "replay_size",
    "client_buffer",
    "logs",
    "log_level",
    "error_log",
    "apps",
    "runs",
}
LOG_LEVELS = ("debug", "info", "warning", "error")
TLS_KEYS = {"certfile", "keyfile", "client_ca"}


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(fld: str, value: Any) -> float:
    """Seconds (more than 0), from a number or a string like ``90s``, ``12h``, ``30d``."""
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value[:-1]) * _UNITS[value[-1:]]
        except (KeyError, ValueError):
            raise ConfigError(
                fld, f"expected seconds or a duration like 30d, got {value!r}"
            ) from None
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ConfigError(fld, f"expected seconds or a duration like 30d, got {value!r}")
    if not 0 < number < 1e12:  # also NaN
        raise ConfigError(fld, f"must be more than 0 seconds (and finite), got {value!r}")
    return float(number)


def _runs(value: Any, source: str | None, line: int | None) -> RunsSettings:
    try:
        if not isinstance(value, dict):
            raise ConfigError("runs", f"must be a mapping (keep, max_age), got {value!r}")
        unknown = set(value) - {"keep", "max_age"}
        if unknown:
            raise ConfigError(f"runs.{sorted(unknown)[0]}", "unknown option (keep, max_age)")
        keep = value.get("keep", DEFAULT_KEEP)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError("runs.keep", f"must be an integer ≥ 1, got {keep!r}")
        max_age = duration("runs.max_age", value.get("max_age", DEFAULT_MAX_AGE))
    except ConfigError as e:
        raise ConfigError(f"daemon.{e.field}", e.bare_reason, source=source, line=line) from None
    return RunsSettings(keep, max_age)


def _strings(fld: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(fld, f"expected a string or a list of strings, got {value!r}")
    return tuple(value)


def _http_settings(daemon: dict[str, Any]) -> HttpSettings:
    """The ``daemon:`` keys of the HTTP API → settings (ConfigError names the key)."""
    kw: dict[str, Any] = {"state_dir": default_state_dir(), "unix_socket": default_socket()}
    if "unix_socket" in daemon:
        value = daemon["unix_socket"]
        if value in (None, False):
            kw["unix_socket"] = None
        elif isinstance(value, str) and value:
            kw["unix_socket"] = os.path.expanduser(value)
        else:
            raise ConfigError("unix_socket", f"expected a path, or false to disable, got {value!r}")
    if "bind" in daemon:
        kw["bind"] = _strings("bind", daemon["bind"]) if daemon["bind"] is not None else ()
    if "require_key" in daemon:
        if not isinstance(daemon["require_key"], bool):
            raise ConfigError(
                "require_key", f"expected true or false, got {daemon['require_key']!r}"
            )
        kw["require_key"] = daemon["require_key"]
    if "cors_origins" in daemon:
        kw["cors_origins"] = _strings("cors_origins", daemon["cors_origins"] or [])
    if "state_dir" in daemon:
        value = daemon["state_dir"]
        if not isinstance(value, str) or not value:
            raise ConfigError("state_dir", f"expected a directory path, got {value!r}")
        kw["state_dir"] = os.path.expanduser(value)
    for key in ("max_body_size", "replay_size", "client_buffer"):
        if key in daemon:
            kw[key] = daemon[key]
    tls = daemon.get("tls")
    if tls is not None:
        if not isinstance(tls, dict):
            raise ConfigError("tls", "expected a mapping with certfile and keyfile")
        for key in tls:
            if key not in TLS_KEYS:
                raise ConfigError(f"tls.{key}", "unknown option (certfile, keyfile, client_ca)")
        for key in ("certfile", "keyfile"):
            if not isinstance(tls.get(key), str) or not tls[key]:
                raise ConfigError(f"tls.{key}", "is required (a PEM file path)")
        ca = tls.get("client_ca")
        if ca is not None and (not isinstance(ca, str) or not ca):
            raise ConfigError("tls.client_ca", f"expected a PEM file path, got {ca!r}")
        kw["tls"] = TlsSettings(tls["certfile"], tls["keyfile"], ca)
    return HttpSettings(**kw)


def load_yaml(text: str, source: str = "<config>") -> Any:
    """A YAML document whose mappings remember their lines (see :func:`line_of`);
    ConfigError naming ``source`` and the line if it is not valid YAML or a
    mapping repeats a key."""
    try:
        return yaml.load(text, Loader=_Loader)
    except ConfigError as e:
        raise ConfigError(e.field, e.bare_reason, source=source, line=e.line) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(None, f"invalid YAML: {problem}", source=source, line=line) from None


def line_of(node: Any, path: list[str]) -> int | None:
    """The line of the deepest key of ``path`` found under ``node`` (a
    document read by :func:`load_yaml`); None in plain data."""
    line = getattr(node, "line", None)
    for key in path:
        if not isinstance(node, _Map) or key not in node:
            break
        line = node.key_lines.get(key, line)
        node = node[key]
    return line


def parse(
    text: str,
    source: str = "<config>",
    base_dir: str | None = None,
    included: bool = False,
    _seen: dict[tuple[str, str], str] | None = None,
    _files: set[str] | None = None,
) -> DaemonConfig:
    """Parse one config file. ``base_dir`` is where relative ``include``,
    ``env_file`` and ``procfile`` paths start (the file's own directory)."""
    base_dir = base_dir or os.getcwd()
    seen: dict[tuple[str, str], str] = {} if _seen is None else _seen
    files: set[str] = set() if _files is None else _files
    doc = load_yaml(text, source)
    cfg = DaemonConfig(source=source)
    if doc is None:
        return cfg
    if not isinstance(doc, _Map):
        raise ConfigError(
            None, "the file must be a mapping with daemon: and jobs:", source=source, line=1
        )
    sections = ("jobs", "include", "procfile") if included else TOP_KEYS
    for key in doc:
        if key not in sections:
            reason = f"unknown section ({', '.join(sections)})"
            if included and key == "daemon":
                reason = "daemon: settings belong in the main config file"
            raise ConfigError(
                str(key),
                reason,
                source=source,
                line=doc.key_lines.get(key),
            )
    daemon = doc.get("daemon") or _Map()
    if not isinstance(daemon, dict):
        raise ConfigError(
            "daemon", "must be a mapping", source=source, line=line_of(doc, ["daemon"])
        )
    for key, value in daemon.items():
        line = line_of(doc, ["daemon", key])
        if key not in DAEMON_KEYS:
            raise ConfigError(f"daemon.{key}", "unknown option", source=source, line=line)
        if key == "loop" and value not in LOOP_KINDS:
            raise ConfigError(
                "daemon.loop",
                f"must be one of {', '.join(LOOP_KINDS)}, got {value!r}",
                source=source,
                line=line,
            )
    cfg.loop = daemon.get("loop")
    if "log_level" in daemon:
        if daemon["log_level"] not in LOG_LEVELS:
            raise ConfigError(
                "daemon.log_level",
                f"must be one of {', '.join(LOG_LEVELS)}, got {daemon['log_level']!r}",
                source=source,
                line=line_of(doc, ["daemon", "log_level"]),
            )
        cfg.log_level = daemon["log_level"]
    if "error_log" in daemon:
        if not isinstance(daemon["error_log"], str) or not daemon["error_log"]:
            raise ConfigError(
                "daemon.error_log",
                f"must be a file path, got {daemon['error_log']!r}",
                source=source,
                line=line_of(doc, ["daemon", "error_log"]),
            )
        cfg.error_log = os.path.join(base_dir, os.path.expanduser(daemon["error_log"]))
    if "apps" in daemon:
        apps = daemon["apps"]
        if not isinstance(apps, list) or not all(
            isinstance(a, str) and ":" in a and all(a.split(":", 1)) for a in apps
        ):
            raise ConfigError(
                "daemon.apps",
                f"expected a list of 'module:factory' names, got {apps!r}",
                source=source,
                line=line_of(doc, ["daemon", "apps"]),
            )
        cfg.apps = list(apps)
    if daemon.get("runs") is not None:
        cfg.runs = _runs(daemon["runs"], source, line_of(doc, ["daemon", "runs"]))
    if daemon.get("logs") is not None:
        cfg.logs = _logs("daemon.logs", daemon["logs"], source, line_of(doc, ["daemon", "logs"]))
    try:
        cfg.http = _http_settings(daemon)
    except ConfigError as e:
        top = (e.field or "").split(".")[0].split("[")[0]
        raise ConfigError(
            f"daemon.{e.field}",
            e.bare_reason,
            source=source,
            line=line_of(doc, ["daemon", top]),
        ) from None
    jobs = doc.get("jobs") or _Map()
    if not isinstance(jobs, dict):
        raise ConfigError(
            "jobs",
            "must be a mapping of job name to options",
            source=source,
            line=line_of(doc, ["jobs"]),
        )
    for fullname, options in jobs.items():
        base = ["jobs", str(fullname)]
        if not isinstance(fullname, str) or not fullname:
            raise ConfigError(
                f"jobs.{fullname}",
                "a job name must be a non-empty string",
                source=source,
                line=line_of(doc, base),
            )
        if not isinstance(options, dict):
            raise ConfigError(
                f"jobs.{fullname}",
                "must be a mapping of options",
                source=source,
                line=line_of(doc, base),
            )
        session, jobname = split_name(str(fullname))
        try:
            options = dict(options)
            if "logs" in options:
                value = options.pop("logs")
                to_stderr = value in ("stderr", False, None)
                cfg.job_logs[f"{session}.{jobname}"] = (
                    None if to_stderr else _logs("logs", value, None, None)
                )
            env_files = options.pop("env_file", None)
            if env_files is not None:
                env = _read_env_files(env_files, base_dir)
                if options.get("env") is not None and not isinstance(options["env"], dict):
                    raise ConfigError("env", f"must be a mapping, got {options['env']!r}")
                options["env"] = {**env, **(options.get("env") or {})}
            config = ProcessConfig.from_dict({**options, "name": jobname})
            config.check_env()
        except ConfigError as e:
            top = (e.field or "").split(".")[0].split("[")[0]
            line = line_of(doc, [*base, top]) if top else line_of(doc, base)
            fld = f"jobs.{fullname}.{e.field}" if e.field else f"jobs.{fullname}"
            raise ConfigError(fld, e.bare_reason, source=source, line=line) from None
        where = f"{source}:{line_of(doc, base)}"
        if (session, jobname) in seen:
            raise ConfigError(
                f"jobs.{fullname}",
                f"the same job as {seen[session, jobname]}",
                source=source,
                line=line_of(doc, base),
            )
        seen[session, jobname] = f"jobs.{fullname} at {where}"
        cfg.jobs.append(JobEntry(session, config))
    if "procfile" in doc:
        for entry in _procfile(doc["procfile"], base_dir, source, line_of(doc, ["procfile"])):
            key = (entry.session, entry.config.name)
            if key in seen:
                raise ConfigError(
                    "procfile",
                    f"{entry.session}.{entry.config.name}: the same job as {seen[key]}",
                    source=source,
                    line=line_of(doc, ["procfile"]),
                )
            seen[key] = f"procfile at {source}:{line_of(doc, ['procfile'])}"
            cfg.jobs.append(entry)
    if "include" in doc:
        line = line_of(doc, ["include"])
        for path in _include_paths(doc["include"], base_dir, source, line):
            real = os.path.realpath(path)
            if real in files:
                continue  # each file once, even when two globs match it
            files.add(real)
            sub_cfg = _parse_file(path, included=True, seen=seen, files=files)
            cfg.jobs.extend(sub_cfg.jobs)
    if not included:
        check_after(cfg)
    return cfg


def check_after(cfg: DaemonConfig) -> None:
    """The file's jobs, taken together (in any order), name only jobs of the
    file in ``after``, and form no cycle: ConfigError naming the job and the
    missing one or the cycle's path."""
    graph = {
        f"{e.session}.{e.config.name}": dependency_names(e.config.after, e.session)
        for e in cfg.jobs
    }
    for name, deps in graph.items():
        if not deps:
            continue
        try:
            check_dependencies(graph, [name])
        except ConfigError as e:
            raise ConfigError(f"jobs.{name}.after", e.bare_reason, source=cfg.source) from None


TOP_KEYS = ("daemon", "jobs", "include", "procfile")


def _logs(fld: str, value: Any, source: str | None, line: int | None) -> LogSettings:
    try:
        return LogSettings.from_dict(value)
    except ConfigError as e:
        name = f"{fld}.{e.field}" if e.field else fld
        if source is None:  # inside a job: the caller adds the job's prefix and line
            raise ConfigError(name, e.bare_reason) from None
        raise ConfigError(name, e.bare_reason, source=source, line=line) from None


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:\s*(.+)$")


def _paths(value: Any, fld: str) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise ConfigError(fld, f"expected a path or a list of paths, got {value!r}")


def _read_lines(
    path: str, base_dir: str, fld: str, source: str | None = None, line: int | None = None
) -> tuple[str, list[str]]:
    """The lines of a file named relative to ``base_dir`` (and its full path);
    ConfigError naming ``fld`` if it cannot be read."""
    full = os.path.join(base_dir, os.path.expanduser(path))
    try:
        with open(full, encoding="utf-8") as f:
            return full, f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(fld, f"cannot read {path}: {reason}", source=source, line=line) from None


def _read_env_files(value: Any, base_dir: str) -> dict[str, str]:
    """``.env`` files: ``KEY=VALUE`` lines (``export`` allowed, ``#`` comments,
    quotes stripped); later files win."""
    env: dict[str, str] = {}
    for path in _paths(value, "env_file"):
        _, lines = _read_lines(path, base_dir, "env_file")
        for n, raw in enumerate(lines, 1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            m = _ENV_LINE.match(raw)
            if m is None:
                raise ConfigError("env_file", f"{path}:{n}: expected KEY=VALUE, got {raw!r}")
            key, val = m.groups()
            if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
                val = val[1:-1]
            elif " #" in val:
                val = val.split(" #", 1)[0].rstrip()
            env[key] = val
    return env


def _include_paths(value: Any, base_dir: str, source: str, line: int | None) -> list[str]:
    out: list[str] = []
    try:
        patterns = _paths(value, "include")
    except ConfigError as e:
        raise ConfigError(e.field, e.bare_reason, source=source, line=line) from None
    for pattern in patterns:
        full = os.path.join(base_dir, os.path.expanduser(pattern))
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        if not glob.has_magic(full) and not os.path.exists(full):
            raise ConfigError("include", f"no such file: {pattern}", source=source, line=line)
        out.extend(matches)
    return out


def _procfile(value: Any, base_dir: str, source: str, line: int | None) -> list[JobEntry]:
    """A Procfile (``name: command`` lines) as jobs of one session (default
    ``procfile``), each with ``$PORT`` set as foreman does: 5000, 5100, ..."""
    path: Any
    session: Any = "procfile"
    if isinstance(value, dict):
        unknown = set(value) - {"path", "session"}
        if unknown:
            raise ConfigError(
                f"procfile.{sorted(unknown)[0]}",
                "unknown option (path, session)",
                source=source,
                line=line,
            )
        path, session = value.get("path"), value.get("session", session)
    else:
        path = value
    if not isinstance(path, str) or not path:
        raise ConfigError("procfile", f"expected a path, got {path!r}", source=source, line=line)
    if not isinstance(session, str) or not session or "." in session or "/" in session:
        raise ConfigError(
            "procfile.session", f"bad session name {session!r}", source=source, line=line
        )
    full, lines = _read_lines(path, base_dir, "procfile", source, line)
    return [JobEntry(session, config) for config in _procfile_configs(full, lines)]


def read_procfile(path: str, port_base: int = 5000) -> list[ProcessConfig]:
    """The jobs of a Procfile (``name: command`` lines), in order: run by the
    shell, with the daemon's environment and ``$PORT`` set as foreman does
    (``port_base``, then +100 a line). ConfigError names the file and line."""
    full, lines = _read_lines(path, os.getcwd(), "procfile")
    return _procfile_configs(full, lines, port_base)


def read_env_files(paths: str | list[str], base_dir: str = ".") -> dict[str, str]:
    """The variables of ``.env`` files (``KEY=VALUE`` lines); later files win."""
    return _read_env_files(paths, base_dir)


def _procfile_configs(full: str, lines: list[str], port_base: int = 5000) -> list[ProcessConfig]:
    out: list[ProcessConfig] = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        m = _PROCFILE_LINE.match(raw.strip())
        if m is None:
            raise ConfigError(None, f"expected 'name: command', got {raw!r}", source=full, line=n)
        name, command = m.groups()
        port = str(port_base + 100 * len(out))
        out.append(
            ProcessConfig.from_dict(
                {"name": name, "cmd": command, "shell": True, "env": {"PORT": port}, "os_env": True}
            )
        )
    return out


def load_file(path: str) -> DaemonConfig:
    if path.endswith(".ini"):  # gaffer 0.5's format
        from gaffer.daemon import ini

        cfg = ini.load(path)
        check_after(cfg)
        return cfg
    return _parse_file(path)


def read_text(path: str) -> str:
    """A config file's text; ConfigError naming the file if it cannot be read
    or is not UTF-8."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(None, f"cannot read: {e.strerror}", source=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(None, f"not UTF-8 text (byte {e.start})", source=path) from None


def _parse_file(
    path: str,
    included: bool = False,
    seen: dict[tuple[str, str], str] | None = None,
    files: set[str] | None = None,
) -> DaemonConfig:
    text = read_text(path)
    source = os.path.relpath(path) if not path.startswith("/") else path
    files = set() if files is None else files
    files.add(os.path.realpath(path))
    return parse(text, source, os.path.dirname(os.path.abspath(path)), included, seen, files)

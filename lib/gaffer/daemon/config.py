"""Read gafferd's YAML config file into validated job configs.

The file has two top-level keys: ``daemon:`` (settings of the daemon itself) and
``jobs:``, a mapping from job name (``web`` or ``session.job``) to that job's
options. Every error names the file, the line and the field::

    etc/gafferd.yml:14: jobs.web.numprocesses: must be an integer ≥ 0, got -1
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from gaffer.config import ProcessConfig, split_name
from gaffer.errors import ConfigError
from gaffer.http.settings import HttpSettings, TlsSettings, default_socket, default_state_dir
from gaffer.loop import LOOP_KINDS


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
}
TLS_KEYS = {"certfile", "keyfile", "client_ca"}


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


def _line_of(node: Any, path: list[str]) -> int | None:
    """The line of the deepest key of ``path`` found under ``node``."""
    line = getattr(node, "line", None)
    for key in path:
        if not isinstance(node, _Map) or key not in node:
            break
        line = node.key_lines.get(key, line)
        node = node[key]
    return line


def parse(text: str, source: str = "<config>") -> DaemonConfig:
    try:
        doc = yaml.load(text, Loader=_Loader)
    except ConfigError as e:
        raise ConfigError(e.field, e.bare_reason, source=source, line=e.line) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(None, f"invalid YAML: {problem}", source=source, line=line) from None
    cfg = DaemonConfig(source=source)
    if doc is None:
        return cfg
    if not isinstance(doc, _Map):
        raise ConfigError(
            None, "the file must be a mapping with daemon: and jobs:", source=source, line=1
        )
    for key in doc:
        if key not in ("daemon", "jobs"):
            raise ConfigError(
                str(key),
                "unknown section (daemon, jobs)",
                source=source,
                line=doc.key_lines.get(key),
            )
    daemon = doc.get("daemon") or _Map()
    if not isinstance(daemon, dict):
        raise ConfigError(
            "daemon", "must be a mapping", source=source, line=_line_of(doc, ["daemon"])
        )
    for key, value in daemon.items():
        line = _line_of(doc, ["daemon", key])
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
    try:
        cfg.http = _http_settings(daemon)
    except ConfigError as e:
        top = (e.field or "").split(".")[0].split("[")[0]
        raise ConfigError(
            f"daemon.{e.field}",
            e.bare_reason,
            source=source,
            line=_line_of(doc, ["daemon", top]),
        ) from None
    jobs = doc.get("jobs") or _Map()
    if not isinstance(jobs, dict):
        raise ConfigError(
            "jobs",
            "must be a mapping of job name to options",
            source=source,
            line=_line_of(doc, ["jobs"]),
        )
    seen: dict[tuple[str, str], str] = {}
    for fullname, options in jobs.items():
        base = ["jobs", str(fullname)]
        if not isinstance(fullname, str) or not fullname:
            raise ConfigError(
                f"jobs.{fullname}",
                "a job name must be a non-empty string",
                source=source,
                line=_line_of(doc, base),
            )
        if not isinstance(options, dict):
            raise ConfigError(
                f"jobs.{fullname}",
                "must be a mapping of options",
                source=source,
                line=_line_of(doc, base),
            )
        session, jobname = split_name(str(fullname))
        try:
            config = ProcessConfig.from_dict({**options, "name": jobname})
            config.check_env()
        except ConfigError as e:
            top = (e.field or "").split(".")[0].split("[")[0]
            line = _line_of(doc, [*base, top]) if top else _line_of(doc, base)
            fld = f"jobs.{fullname}.{e.field}" if e.field else f"jobs.{fullname}"
            raise ConfigError(fld, e.bare_reason, source=source, line=line) from None
        if (session, jobname) in seen:
            raise ConfigError(
                f"jobs.{fullname}",
                f"the same job as jobs.{seen[session, jobname]}",
                source=source,
                line=_line_of(doc, base),
            )
        seen[session, jobname] = fullname
        cfg.jobs.append(JobEntry(session, config))
    return cfg


def load_file(path: str) -> DaemonConfig:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(None, f"cannot read: {e.strerror}", source=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(None, f"not UTF-8 text (byte {e.start})", source=path) from None
    return parse(text, os.path.relpath(path) if not path.startswith("/") else path)

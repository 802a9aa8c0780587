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


DAEMON_KEYS = {"loop"}


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

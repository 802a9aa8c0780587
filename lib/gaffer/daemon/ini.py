"""gaffer 0.5's ``gafferd.ini``, read so that existing users can point gafferd
at their old file, and converted to the YAML format (``gafferd --convert``).

Sections: ``[gaffer]`` (``bind``, ``include``), ``[job:NAME]`` or
``[process:NAME]`` (``NAME``, ``NAME/SESSION``, ``NAME:SESSION`` or
``NAME.SESSION``, as 0.5 split it), ``[env:NAME]`` and ``[ssl]``.
``[webhooks]`` are read and reported, but gaffer has no webhooks: they are
dropped with a warning (subscribe to the event stream instead).
"""

from __future__ import annotations

import configparser
import logging
import os
import shlex
from typing import Any

import yaml

from gaffer.config import ProcessConfig
from gaffer.daemon.config import DaemonConfig, JobEntry
from gaffer.errors import ConfigError
from gaffer.http.settings import HttpSettings, TlsSettings, default_state_dir

log = logging.getLogger("gafferd.ini")

BOOLS = ("detach", "shell", "os_env", "start", "redirect_input")
INTS = ("numprocesses", "graceful_timeout", "priority")
STRINGS = ("uid", "gid", "cwd")


def _split_name(name: str) -> tuple[str, str]:
    """0.5's order: the job first, then its session."""
    for sep in ("/", ":", "."):
        if sep in name:
            job, session = name.split(sep, 1)
            return session, job
    return "default", name


def read(path: str) -> tuple[dict[str, Any], list[str]]:
    """The file as YAML-shaped data ``{"daemon": ..., "jobs": ...}``, and the
    warnings about what has no equivalent."""
    # "=" only: a key may be "env:NAME"
    cfg = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    try:
        with open(path, encoding="utf-8") as f:
            cfg.read_file(f)
        for extra in (cfg.get("gaffer", "include", fallback="") or "").split():
            cfg.read(os.path.join(os.path.dirname(path), extra), encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            None, f"cannot read: {getattr(e, 'strerror', None) or e}", source=path
        ) from None
    except configparser.Error as e:
        raise ConfigError(None, f"invalid INI: {e.message}", source=path) from None
    warnings: list[str] = []
    daemon: dict[str, Any] = {}
    jobs: dict[str, dict[str, Any]] = {}
    envs: dict[str, dict[str, str]] = {}
    for section in cfg.sections():
        items = dict(cfg.items(section))
        if section == "gaffer":
            for key, value in items.items():
                if key == "bind":
                    daemon["bind"] = [value]
                elif key != "include":
                    warnings.append(
                        f"[gaffer] {key}: no equivalent in the YAML file (see gafferd --help)"
                    )
        elif section.startswith(("job:", "process:")):
            session, job = _split_name(section.split(":", 1)[1])
            jobs[f"{session}.{job}"] = _job(section, items)
        elif section.startswith("env:"):
            session, job = _split_name(section.split(":", 1)[1])
            envs[f"{session}.{job}"] = {k.upper(): v for k, v in items.items()}
        elif section == "ssl":
            tls = {k: v for k, v in items.items() if k in ("certfile", "keyfile")}
            if "ca_certs" in items:
                tls["client_ca"] = items["ca_certs"]
            daemon["tls"] = tls
        elif section == "webhooks":
            for event, url in items.items():
                warnings.append(
                    f"[webhooks] {event} = {url}: gaffer has no webhooks; "
                    "subscribe to /events or the channel instead"
                )
        else:
            warnings.append(f"[{section}]: unknown section, ignored")
    for name, env in envs.items():
        if name in jobs:
            jobs[name]["env"] = {**jobs[name].get("env", {}), **env}
        else:
            warnings.append(f"[env:{name}]: no such job, ignored")
    doc: dict[str, Any] = {}
    if daemon:
        doc["daemon"] = daemon
    doc["jobs"] = jobs
    return doc, warnings


def _job(section: str, items: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    env: dict[str, str] = {}
    for key, value in items.items():
        try:
            if key == "cmd":
                out["cmd"] = value
            elif key == "args":
                out["args"] = shlex.split(value)
            elif key.startswith("env:"):
                env[key.split(":", 1)[1].upper()] = value
            elif key in BOOLS:
                out[key] = configparser.ConfigParser.BOOLEAN_STATES[value.lower()]
            elif key in INTS:
                out[key] = int(value)
            elif key in STRINGS:
                out[key] = int(value) if key in ("uid", "gid") and value.isdigit() else value
            elif key == "flapping":
                names = ("attempts", "window", "retry_in", "max_retry")
                nums = [float(v) for v in value.split()]
                out["flapping"] = {
                    k: int(v) if k in ("attempts", "max_retry") else v
                    for k, v in zip(names, nums, strict=False)
                }
            elif key == "redirect_output":
                out["redirect_output"] = [v.strip() for v in value.split(",") if v.strip()]
            elif key == "custom_streams":
                out["custom_streams"] = [v.strip() for v in value.split(",") if v.strip()]
            else:
                raise ConfigError(f"[{section}] {key}", "unknown option")
        except (ValueError, KeyError):
            raise ConfigError(f"[{section}] {key}", f"bad value {value!r}") from None
    if env:
        out["env"] = env
    out.setdefault("os_env", True)  # 0.5's default
    if "cmd" not in out:
        raise ConfigError(f"[{section}] cmd", "is required")
    return out


def load(path: str) -> DaemonConfig:
    """A 0.5 INI file as the daemon's config."""
    doc, warnings = read(path)
    for warning in warnings:
        log.warning("%s: %s", path, warning)
    cfg = DaemonConfig(source=path)
    daemon = doc.get("daemon", {})
    kw: dict[str, Any] = {"state_dir": default_state_dir()}
    if "bind" in daemon:
        kw["bind"] = tuple(daemon["bind"])
    if "tls" in daemon:
        tls = daemon["tls"]
        if "certfile" not in tls or "keyfile" not in tls:
            raise ConfigError("[ssl]", "certfile and keyfile are required", source=path)
        kw["tls"] = TlsSettings(tls["certfile"], tls["keyfile"], tls.get("client_ca"))
    try:
        cfg.http = HttpSettings(**kw)
        for name, options in doc["jobs"].items():
            session, job = name.split(".", 1)
            try:
                config = ProcessConfig.from_dict({**options, "name": job})
            except ConfigError as e:
                raise ConfigError(f"[job:{job}] {e.field}", e.bare_reason) from None
            cfg.jobs.append(JobEntry(session, config))
    except ConfigError as e:
        raise ConfigError(e.field, e.bare_reason, source=path) from None
    return cfg


def convert(path: str) -> str:
    """The YAML equivalent of a 0.5 INI file, with what could not be carried
    over as comments at the top."""
    doc, warnings = read(path)
    head = "".join(f"# {w}\n" for w in warnings)
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)

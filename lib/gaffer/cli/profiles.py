"""Which daemon the command talks to: ``-H/--host``, ``$GAFFER_HOST``, or a
named profile of ``~/.gaffer/gaffer.yml`` (host, key, TLS files); else the
local daemon's unix socket.

The file is YAML. ``gaffer login`` writes it in YAML's JSON form, which the
command reads without loading a YAML parser (~40 ms here); a file edited
into block style by hand is read with PyYAML.
"""

from __future__ import annotations

import json
import os

from gaffer.client.target import Target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any

FIELDS = ("host", "key", "cafile", "certfile", "keyfile", "insecure")


class ProfileError(Exception):
    """The profile file cannot be read, or names no such profile."""


def profiles_path() -> str:
    return os.path.join(os.path.expanduser("~"), ".gaffer", "gaffer.yml")


def read_profiles(path: str | None = None) -> dict[str, dict[str, Any]]:
    path = path or profiles_path()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ProfileError(f"{path}: {e.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ProfileError(f"{path}: not valid YAML: {e}") from None
    profiles = data.get("profiles", {}) if isinstance(data, dict) else None
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise ProfileError(f"{path}: profiles: expected a mapping of names to mappings")
    for name, prof in profiles.items():
        unknown = set(prof) - set(FIELDS)
        if unknown:
            raise ProfileError(
                f"{path}: profiles.{name}.{sorted(unknown)[0]}: unknown field ({', '.join(FIELDS)})"
            )
    return profiles


def write_profile(name: str, profile: dict[str, Any], path: str | None = None) -> str:
    """Add or replace one profile; the file and its folder are private (0600/0700)."""
    path = path or profiles_path()
    profiles = read_profiles(path)
    profiles[name] = {k: v for k, v in profile.items() if v is not None}
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"profiles": profiles}, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    os.chmod(path, 0o600)
    return path


def resolve(args: Namespace) -> tuple[Target, str | None]:
    """The target of this invocation and the profile it came from (if any)."""
    host = args.host or os.environ.get("GAFFER_HOST") or None
    wanted = args.profile or os.environ.get("GAFFER_PROFILE") or None
    profile: dict[str, Any] = {}
    name: str | None = None
    profiles = read_profiles()
    if wanted:
        if wanted not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ProfileError(
                f"profile {wanted!r} not found in {profiles_path()} (known: {known})"
            )
        name, profile = wanted, profiles[wanted]
    elif host is None and "default" in profiles:
        name, profile = "default", profiles["default"]
    elif host is not None:
        # a key stored by `gaffer login -H <host>` goes with that host
        for pname, prof in profiles.items():
            if prof.get("host") == host:
                name, profile = pname, prof
                break
    key = args.key or os.environ.get("GAFFER_KEY") or profile.get("key")
    target = Target(
        host or profile.get("host"),
        key=key,
        cafile=args.cacert or profile.get("cafile"),
        certfile=args.cert or profile.get("certfile"),
        keyfile=args.cert_key or profile.get("keyfile"),
        verify=not (args.insecure or profile.get("insecure", False)),
        timeout=args.timeout,
    )
    return target, name

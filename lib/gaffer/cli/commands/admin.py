"""Commands for who may do what, and for the daemon itself: ``login`` and
``logout`` (API keys kept in profiles of ``~/.gaffer/gaffer.yml``),
``key:*`` and ``user:*`` (the daemon's key and user store), and ``daemon
status|reload|reexec``."""

from __future__ import annotations

import os
import sys
import time

from gaffer.cli.context import Failure, UsageError
from gaffer.cli.output import human_duration
from gaffer.client.errors import ConnectionError, GafferClientError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from gaffer.cli.context import Context
    from gaffer.client.sync import Client
    from gaffer.client.types import KeyInfo, Permissions, UserInfo

DEFAULT_REEXEC_TIMEOUT = 30.0
FLAGS = ("admin", "create_key", "create_user")
LEVELS = ("manage", "write", "read")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    _register_login(sub, common)
    _register_keys(sub, common)
    _register_users(sub, common)
    _register_daemon(sub, common)


# -- shared bits ------------------------------------------------------------------------


def add_rights_options(p: argparse.ArgumentParser, admin: bool = True) -> None:
    g = p.add_argument_group(
        "rights", "NAME is '*' (every job), a session (every job in it) or session.job"
    )
    if admin:
        g.add_argument("--admin", action="store_true", help="every right")
    g.add_argument("--create-key", action="store_true", help="may create keys (no broader)")
    g.add_argument("--create-user", action="store_true", help="may create and change users")
    for level, what in (
        ("manage", "load, update and unload (implies write and read)"),
        ("write", "start, stop, scale, signal, commit, send (implies read)"),
        ("read", "see status, output and events"),
    ):
        g.add_argument(
            f"--{level}", action="append", default=[], metavar="NAME", help=f"may {what}"
        )


def rights_from(args: argparse.Namespace) -> dict[str, Any]:
    perms: dict[str, Any] = {f: True for f in FLAGS if getattr(args, f, False)}
    for level in LEVELS:
        if getattr(args, level):
            perms[level] = list(getattr(args, level))
    return perms


def rights_text(perms: Permissions | dict[str, Any] | None) -> str:
    """``admin`` or ``create_key write=default read=*``: a key's rights on one line."""
    if not perms:
        return "none"
    if perms.get("admin"):
        return "admin"
    parts = [f for f in FLAGS if perms.get(f)]
    for level in LEVELS:
        entries = perms.get(level) or []
        if isinstance(entries, list) and entries:
            parts.append(f"{level}={','.join(map(str, entries))}")
    return " ".join(parts) or "none"


def key_id(raw: str) -> str:
    """A key's id; given a whole token (``<id>.<secret>``), only the id part,
    so the secret never travels in a URL (the daemon logs request paths)."""
    return raw.partition(".")[0]


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def read_password(
    args: argparse.Namespace, prompt: str = "password: ", confirm: bool = False
) -> str:
    """One line of stdin with ``--password-stdin``; else asked on the terminal."""
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        if not sys.stdin.isatty():
            raise UsageError("password: no terminal to ask it on; use --password-stdin")
        import getpass

        password = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != password:
            raise UsageError("password: the two entries differ")
    if not password:
        raise UsageError("password: empty")
    return password


# -- login and logout -------------------------------------------------------------------


def _register_login(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "login",
        parents=[common],
        help="log in and keep an API key in a profile",
        description="Ask the daemon for an API key (GET /auth with a user's name and "
        "password) and store it, with the host and TLS options, as a profile of "
        "~/.gaffer/gaffer.yml (mode 0600). With --key KEY, store that key instead "
        "(checked with the daemon first). -P picks the profile (default: 'default').",
    )
    p.add_argument("--user", "-u", metavar="USER", help="the user (asked on a terminal)")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password as one line of stdin"
    )
    p.set_defaults(func=cmd_login)
    p = sub.add_parser(
        "logout",
        parents=[common],
        help="remove a profile's API key",
        description="Remove the API key from a profile (-P, default 'default'); a key "
        "that `gaffer login` obtained is revoked at the daemon too.",
    )
    p.set_defaults(func=cmd_logout)


def _profile_name(args: argparse.Namespace) -> str:
    return str(args.profile or os.environ.get("GAFFER_PROFILE") or "default")


def _read_profiles() -> dict[str, dict[str, Any]]:
    from gaffer.cli.profiles import ProfileError, read_profiles

    try:
        return read_profiles()
    except ProfileError as e:
        raise UsageError(str(e)) from None


def cmd_login(ctx: Context, args: argparse.Namespace) -> int:
    from gaffer.cli.profiles import write_profile
    from gaffer.client.errors import BadRequest
    from gaffer.client.sync import Client
    from gaffer.client.target import Target

    name = _profile_name(args)
    old = _read_profiles().get(name, {})
    host = args.host or os.environ.get("GAFFER_HOST") or old.get("host")
    profile: dict[str, Any] = {
        "host": host,
        "cafile": args.cacert or old.get("cafile"),
        "certfile": args.cert or old.get("certfile"),
        "keyfile": args.cert_key or old.get("keyfile"),
        "insecure": True if args.insecure or old.get("insecure") else None,
    }
    try:
        target = Target(
            host,
            key=args.key,
            cafile=profile["cafile"],
            certfile=profile["certfile"],
            keyfile=profile["keyfile"],
            verify=not profile["insecure"],
            timeout=args.timeout,
        )
    except BadRequest as e:
        raise UsageError(str(e)) from None
    with Client(target=target) as client:
        if args.key:
            # a key of no use must not be stored: ask the daemon about it with it
            info = client.key_info(key_id(args.key))
            key, user = args.key, info.get("user")
        else:
            user = args.user
            if not user:
                if not sys.stdin.isatty():
                    raise UsageError("--user: needed when not on a terminal")
                user = input("user: ").strip()
                if not user:
                    raise UsageError("user: empty")
            key = client.login(user, read_password(args))
    profile["key"] = key
    path = write_profile(name, profile)
    out = ctx.out
    who = f" as {user}" if user else ""
    out.result(
        # the key's id, never its secret: this output ends up in logs and CI transcripts
        {"profile": name, "path": path, "host": target.url, "user": user, "key": key_id(key)},
        f"logged in to {target.url}{who}; key stored in {path} (profile {name})",
    )
    if name != "default" and not out.json_mode:
        out.note(f"use it with: gaffer -P {name} COMMAND")
    return 0


def cmd_logout(ctx: Context, args: argparse.Namespace) -> int:
    from gaffer.cli.profiles import write_profile

    name = _profile_name(args)
    profiles = _read_profiles()
    if name not in profiles:
        raise Failure(
            f"profile {name!r} not found (known: {', '.join(sorted(profiles)) or 'none'})"
        )
    profile = dict(profiles[name])
    key = profile.pop("key", None)
    if not key:
        raise Failure(f"profile {name!r} holds no key")
    revoked, why = False, None
    try:
        # Only a key `gaffer login` minted is revoked: one given with --key
        # may be shared (a CI key) and is not this profile's to destroy.
        client = ctx.client
        if ctx.profile == name and client.target.key == key:
            info = client.key_info(key_id(key))
            if str(info.get("label", "")).startswith("login:"):
                client.delete_key(key_id(key))
                revoked = True
    except GafferClientError as e:
        why = e.reason
    path = write_profile(name, profile)
    ctx.out.result(
        {"profile": name, "path": path, "revoked": revoked},
        f"logged out: key removed from profile {name} ({path})"
        + ("; revoked at the daemon" if revoked else ""),
    )
    if why:
        ctx.out.note(f"the key could not be revoked at the daemon: {why}")
    return 0


# -- keys -------------------------------------------------------------------------------


def _register_keys(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "key:list",
        parents=[common],
        help="API keys (all with an admin key; else those under this key)",
    )
    p.set_defaults(func=cmd_key_list)
    p = sub.add_parser(
        "key:create",
        parents=[common],
        help="create an API key (no broader than the one used); its secret is shown once",
    )
    p.add_argument("--label", default="", help="what the key is for")
    p.add_argument("--parent", metavar="ID", help="the key it belongs under (default: this key)")
    add_rights_options(p)
    p.set_defaults(func=cmd_key_create)
    p = sub.add_parser("key:info", parents=[common], help="one API key: rights, owner, parent")
    # dest: "key" is the API key the command itself uses (--key)
    p.add_argument("key_ref", metavar="KEY", help="the key's id")
    p.add_argument("--children", action="store_true", help="and the keys directly under it")
    p.set_defaults(func=cmd_key_info)
    p = sub.add_parser(
        "key:delete", parents=[common], help="delete an API key and every key under it"
    )
    p.add_argument("key_ref", metavar="KEY", help="the key's id")
    p.set_defaults(func=cmd_key_delete)


def _key_rows(keys: list[KeyInfo]) -> list[list[Any]]:
    return [
        [
            k.get("key"),
            k.get("label") or None,
            k.get("user"),
            k.get("parent"),
            when(k.get("created")),
            rights_text(k.get("permissions")),
        ]
        for k in keys
    ]


KEY_HEADERS = ["KEY", "LABEL", "USER", "PARENT", "CREATED", "RIGHTS"]


def cmd_key_list(ctx: Context, args: argparse.Namespace) -> int:
    keys = ctx.client.keys()
    out = ctx.out
    if out.json_mode:
        out.json(keys)
    elif not keys:
        out.note("no keys")
    else:
        out.print(out.table(KEY_HEADERS, _key_rows(keys)))
    return 0


def cmd_key_create(ctx: Context, args: argparse.Namespace) -> int:
    res = ctx.client.create_key(rights_from(args), label=args.label, parent=args.parent)
    out = ctx.out
    if out.json_mode:
        out.json(res)
        return 0
    out.print(res["api_key"])
    out.note(f"key {res['key']} created; the line above is its secret, shown this once")
    return 0


def cmd_key_info(ctx: Context, args: argparse.Namespace) -> int:
    info = ctx.client.key_info(key_id(args.key_ref), include_keys=args.children)
    out = ctx.out
    lines = [
        f"{label + ':':<9} {value}"
        for label, value in (
            ("key", info.get("key")),
            ("label", info.get("label") or "-"),
            ("user", info.get("user") or "-"),
            ("parent", info.get("parent") or "-"),
            ("created", when(info.get("created"))),
            ("rights", rights_text(info.get("permissions"))),
        )
    ]
    if args.children:
        children = info.get("keys") or []
        lines.append("")
        lines.append(
            out.table(KEY_HEADERS, _key_rows(children)) if children else "no keys under it"
        )
    out.result(info, "\n".join(lines))
    return 0


def cmd_key_delete(ctx: Context, args: argparse.Namespace) -> int:
    from gaffer.client.sync import quote

    # the request itself, not Client.delete_key: the answer names every key deleted
    res = ctx.client.request("DELETE", f"/keys/{quote(key_id(args.key_ref))}")
    deleted = list(res.get("deleted") or [])
    ctx.out.result(
        {"ok": True, "deleted": deleted}, f"deleted {len(deleted)} key(s): {', '.join(deleted)}"
    )
    return 0


# -- users ------------------------------------------------------------------------------


def _register_users(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("user:list", parents=[common], help="users (needs an admin key)")
    p.set_defaults(func=cmd_user_list)
    p = sub.add_parser(
        "user:create",
        parents=[common],
        help="create a user, with a new key of the given rights or an existing --key",
        description="Create a user. Its rights are those of its key: a new one with the "
        "rights given here (--admin: an admin user), or an existing one (--with-key). The "
        "password is asked on a terminal, or read with --password-stdin.",
    )
    p.add_argument("username", metavar="USER")
    p.add_argument("--password-stdin", action="store_true", help="read it as one line of stdin")
    add_rights_options(p)
    # not --key: that is the API key the command itself uses
    p.add_argument("--with-key", dest="user_key", metavar="ID", help="give it this existing key")
    p.set_defaults(func=cmd_user_create)
    p = sub.add_parser("user:info", parents=[common], help="one user: type and key")
    p.add_argument("username", metavar="USER")
    p.set_defaults(func=cmd_user_info)
    p = sub.add_parser("user:delete", parents=[common], help="delete a user and its keys")
    p.add_argument("username", metavar="USER")
    p.set_defaults(func=cmd_user_delete)
    p = sub.add_parser("user:setpassword", parents=[common], help="set a user's password")
    p.add_argument("username", metavar="USER")
    p.add_argument("--password-stdin", action="store_true", help="read it as one line of stdin")
    p.set_defaults(func=cmd_user_setpassword)
    p = sub.add_parser(
        "user:setkey", parents=[common], help="give a user an existing key (and its rights)"
    )
    p.add_argument("username", metavar="USER")
    p.add_argument("user_key", metavar="KEY", help="the key's id")
    p.set_defaults(func=cmd_user_setkey)


def _user_type(user: UserInfo) -> str:
    return "admin" if user.get("user_type") == 0 else "user"


def cmd_user_list(ctx: Context, args: argparse.Namespace) -> int:
    users = ctx.client.users()
    out = ctx.out
    if out.json_mode:
        out.json(users)
    elif not users:
        out.note("no users")
    else:
        rows = [[u.get("username"), _user_type(u), u.get("key")] for u in users]
        out.print(out.table(["USER", "TYPE", "KEY"], rows))
    return 0


def cmd_user_create(ctx: Context, args: argparse.Namespace) -> int:
    rights = rights_from(args)
    admin = rights.pop("admin", False)
    if args.user_key and (rights or admin):
        raise UsageError("--with-key: the user gets that key's rights; give no other rights")
    if admin and rights:
        raise UsageError("--admin: an admin user has every right; give no other rights")
    password = read_password(args, confirm=True)
    user = ctx.client.create_user(
        args.username,
        password,
        user_type=0 if admin else 1,
        permissions=None if admin or args.user_key else rights,
        key=key_id(args.user_key) if args.user_key else None,
    )
    ctx.out.result(
        user, f"{_user_type(user)} {user.get('username')} created (key {user.get('key')})"
    )
    return 0


def cmd_user_info(ctx: Context, args: argparse.Namespace) -> int:
    user = ctx.client.user_info(args.username)
    lines = [
        f"user:     {user.get('username')}",
        f"type:     {_user_type(user)}",
        f"key:      {user.get('key') or '-'}",
    ]
    lines += [
        f"{k + ':':<9} {v}" for k, v in user.items() if k not in ("username", "user_type", "key")
    ]
    ctx.out.result(user, "\n".join(lines))
    return 0


def cmd_user_delete(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client.delete_user(args.username)
    ctx.out.result({"ok": True, "deleted": args.username}, f"user {args.username} deleted")
    return 0


def cmd_user_setpassword(ctx: Context, args: argparse.Namespace) -> int:
    password = read_password(args, prompt=f"new password for {args.username}: ", confirm=True)
    ctx.client.set_password(args.username, password)
    ctx.out.result({"ok": True}, f"password of {args.username} changed")
    return 0


def cmd_user_setkey(ctx: Context, args: argparse.Namespace) -> int:
    key = key_id(args.user_key)
    ctx.client.set_user_key(args.username, key)
    ctx.out.result(
        {"ok": True, "user": args.username, "key": key}, f"user {args.username} now has key {key}"
    )
    return 0


# -- the daemon -------------------------------------------------------------------------


def _register_daemon(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "daemon",
        parents=[common],
        help="the daemon itself: status, reload its config, re-execute it",
    )
    dsub = p.add_subparsers(
        dest="daemon_command", metavar="ACTION", required=True, parser_class=type(p)
    )
    d = dsub.add_parser(
        "status",
        parents=[common],
        help="version, uptime, jobs and processes, where it was reached",
    )
    d.set_defaults(func=cmd_daemon_status)
    d = dsub.add_parser(
        "reload",
        parents=[common],
        help="re-read the daemon's config file and apply the difference (SIGHUP)",
        description="Re-read gafferd's config file and apply the difference: prints the "
        "jobs loaded, unloaded, updated (rolled over, or in place for metadata), scaled and "
        "unchanged. A file that does not load changes nothing: exit 1 with the daemon's error.",
    )
    d.set_defaults(func=cmd_daemon_reload)
    d = dsub.add_parser(
        "reexec",
        parents=[common],
        help="re-execute gafferd in place (SIGUSR2): same pid, every process kept",
        description="Re-execute gafferd in place (e.g. after an upgrade) and wait until it "
        "answers again; every process keeps running.",
    )
    from gaffer.cli.commands.jobs import add_wait_options

    add_wait_options(d, default=DEFAULT_REEXEC_TIMEOUT)
    d.set_defaults(func=cmd_daemon_reexec)


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def cmd_daemon_status(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client
    version = client.version()
    jobs = client.status(stats=False)
    uptime: float | None = None
    last_reload: dict[str, Any] | None = None
    try:
        uptime = _metric(client.metrics(), "gaffer_daemon_uptime_seconds")
    except GafferClientError as e:  # a key that may not read everything
        if isinstance(e, ConnectionError):
            raise
    try:
        last_reload = dict(client.last_reload())
    except GafferClientError as e:  # none yet, or not for this key
        if isinstance(e, ConnectionError):
            raise
    running = sum(j["running"] for j in jobs)
    wanted = sum(j["numprocesses"] for j in jobs if j["active"])
    summary = {
        "host": client.target.url,
        "profile": ctx.profile,
        "version": version,
        "uptime": uptime,
        "jobs": len(jobs),
        "active": sum(1 for j in jobs if j["active"]),
        "running": running,
        "wanted": wanted,
        "last_reload": last_reload,
    }
    profile = f" (profile {ctx.profile})" if ctx.profile else ""
    lines = [
        f"gafferd {version} at {client.target.url}{profile}",
        f"uptime:      {human_duration(uptime)}",
        f"jobs:        {len(jobs)} ({summary['active']} active)",
        f"processes:   {running} running of {wanted} wanted",
    ]
    if last_reload:
        state = "ok" if last_reload.get("ok") else f"failed: {last_reload.get('error')}"
        lines.append(f"last reload: {when(last_reload.get('time'))} {state}")
    ctx.out.result(summary, "\n".join(lines))
    return 0


RELOAD_PARTS = ("loaded", "unloaded", "updated", "scaled", "unchanged")


def cmd_daemon_reload(ctx: Context, args: argparse.Namespace) -> int:
    # a file that does not load is a 409 with the daemon's reason: exit 1 in main
    result = ctx.client.reload_config()
    parts: dict[str, Any] = dict(result)
    lines = [f"reloaded {result.get('source') or '(no config file)'}"]
    for part in RELOAD_PARTS:
        names = parts.get(part) or []
        lines.append(f"  {part + ':':<10} {', '.join(names) if names else '-'}")
    ctx.out.result(result, "\n".join(lines))
    return 0


def _os_pids(client: Client) -> set[int]:
    rows = (p for j in client.status(stats=False) for p in j["processes"])
    return {pid for p in rows if (pid := p.get("os_pid")) is not None}


def cmd_daemon_reexec(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client
    out = ctx.out
    timeout: float = args.wait_timeout
    if args.no_wait:
        client.reexec()
        out.result({"ok": True, "waited": False}, "re-exec requested")
        return 0
    before = _os_pids(client)
    # Opened before the request: the daemon's end of this stream closes when
    # the old program execs, which tells it happened (the pid stays the same).
    # A topic nothing publishes on keeps it quiet meanwhile.
    stream = client.stream("/events", {"topic": "gaffer.cli.reexec"})
    deadline = time.monotonic() + timeout
    try:
        client.reexec()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(
                    f"the daemon accepted the re-exec but did not re-execute in {timeout:g}s "
                    "(see its log: e.g. its config file no longer loads)"
                )
            stream.settimeout(left)
            try:
                next(stream)
            except (StopIteration, ConnectionError):
                if time.monotonic() < deadline:
                    break
    finally:
        stream.close()
    client.close()
    # The new program answers once it has adopted every process. Nothing
    # announces that (the event stream went with the old program), so asking
    # is the only signal there is. The listening socket is kept across the
    # exec: a connection waits in its backlog until the new program accepts,
    # and the first ping normally just answers late. Only when the socket is
    # briefly missing or refused is it asked again, backing off.
    delay = 0.01
    while True:
        try:
            client.ping()
            break
        except ConnectionError as e:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectionError(
                    f"gafferd did not come back in {timeout:g}s after re-executing: {e.reason}"
                ) from None
            client.close()
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.5)
    after = _os_pids(client)
    kept = len(before & after)
    lost = sorted(before - after)
    out.result(
        {"ok": True, "kept": kept, "gone": lost},
        f"ok: gafferd re-executed in place; {kept} process(es) kept running",
    )
    if lost and not out.json_mode:
        # ended on their own meanwhile (a one-off, a crash): not the re-exec's doing
        out.note(f"gone meanwhile (os pids): {', '.join(map(str, lost))}")
    return 0

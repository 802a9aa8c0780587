"""What an API key may do: gaffer 0.5's permission model, with its holes closed.

A key carries three booleans (``admin``, ``create_key``, ``create_user``) and three
sets of entries, one per level: ``read`` ⊂ ``write`` ⊂ ``manage``. An entry is
``"*"`` (every job), a session name (``"prod"``: the session and every job in it)
or ``"session.job"`` (that job only). A right at one level implies the levels below
it, so a ``manage`` entry also grants ``write`` and ``read``.

Names asked about are always full: ``"session.job"`` for a job, ``"session"`` for
a session-wide action, ``None`` for an action on everything. Note that an entry
without a dot is a *session*, never a job of the ``default`` session: write
``"default.web"`` for that job.

Compared with 0.5: input is validated strictly (a string where a list is expected
is an error, not a list of characters), an entry ``"s"`` never matches a session
that merely starts with ``s``, and a key can only hand out rights it holds itself
(:meth:`Permissions.not_covered_by`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gaffer.errors import BadRequest

LEVELS = ("read", "write", "manage")  # each level implies the ones before it

_FLAGS = ("admin", "create_key", "create_user")
_ENTRY = "'*', session or session.job"


def _short(v: object) -> str:
    # Errors echo the caller's input; keep a huge value from flooding the answer.
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _normalise_entry(fld: str, v: object) -> str:
    """One entry, validated; ``"s/j"`` comes back as ``"s.j"``."""
    bad = BadRequest(f"{fld}: expected '*', a session or session.job, got {_short(v)}")
    if not isinstance(v, str) or not v:
        raise bad
    if v == "*":
        return v
    # Whitespace and control characters never occur in a real name; accepting them
    # would let " prod" look like "prod" in a listing while matching nothing.
    if any(c.isspace() or not c.isprintable() for c in v):
        raise bad
    # The same split as gaffer.config.split_name: "/" first, then "."; a session
    # never holds either, a job may hold dots but no "/".
    if "/" in v:
        session, _, job = v.partition("/")
    elif "." in v:
        session, _, job = v.partition(".")
    else:
        session, job = v, None
    if not session or "." in session or "*" in session:
        raise bad
    if job is None:
        return session
    # "*" only stands alone: "prod.*" would read like a wildcard but match nothing.
    if not job or "/" in job or job.startswith(".") or "*" in job:
        raise bad
    return f"{session}.{job}"


def _normalise_entries(fld: str, v: object) -> frozenset[str]:
    # A str is iterable too; taking "prod" as {"p", "r", "o", "d"} was 0.5's hole.
    if not isinstance(v, list | tuple | set | frozenset):
        raise BadRequest(f"{fld}: expected a list of {_ENTRY} entries, got {_short(v)}")
    return frozenset(_normalise_entry(f"{fld}[{i}]", e) for i, e in enumerate(v))


def _flag(fld: str, v: object) -> bool:
    # 1 and "yes" are not booleans; a typo must not grant (or silently drop) a right.
    if not isinstance(v, bool):
        raise BadRequest(f"{fld}: expected true or false, got {_short(v)}")
    return v


def _split(name: str) -> tuple[str, str | None] | None:
    """``"s.j"`` -> ``("s", "j")``, ``"s"`` -> ``("s", None)``, ``"s/j"`` like
    ``"s.j"``; None for something that is no name (only ``"*"`` covers that)."""
    sep = "/" if "/" in name else "."
    session, found, job = name.partition(sep)
    if not session or "." in session or (found and (not job or "/" in job)):
        return None
    return (session, job) if found else (session, None)


@dataclass(frozen=True)
class Permissions:
    """The rights of one API key. Immutable; build it with :meth:`from_dict` from
    untrusted input. Direct construction validates too, with the field names of
    ``permissions``."""

    admin: bool = False
    create_key: bool = False
    create_user: bool = False
    manage: frozenset[str] = frozenset()
    write: frozenset[str] = frozenset()
    read: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # Normalising here too means a Permissions built in code ({"prod/web"},
        # a plain set) obeys the same rules as one read from JSON.
        for name in _FLAGS:
            _flag(f"permissions.{name}", getattr(self, name))
        for level in LEVELS:
            entries = _normalise_entries(f"permissions.{level}", getattr(self, level))
            object.__setattr__(self, level, entries)

    @classmethod
    def from_dict(cls, d: object, field: str = "permissions") -> Permissions:
        """Validate a JSON object; every error is a BadRequest naming the field.
        Missing fields default to no right."""
        if not isinstance(d, dict):
            raise BadRequest(f"{field}: expected an object, got {_short(d)}")
        flags: dict[str, bool] = {}
        levels: dict[str, frozenset[str]] = {}
        for key, value in d.items():
            if key in _FLAGS:
                flags[key] = _flag(f"{field}.{key}", value)
            elif key in LEVELS:
                levels[key] = _normalise_entries(f"{field}.{key}", value)
            else:
                raise BadRequest(f"{field}.{_name(key)}: unknown permission")
        none: frozenset[str] = frozenset()
        return cls(
            admin=flags.get("admin", False),
            create_key=flags.get("create_key", False),
            create_user=flags.get("create_user", False),
            manage=levels.get("manage", none),
            write=levels.get("write", none),
            read=levels.get("read", none),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "admin": self.admin,
            "create_key": self.create_key,
            "create_user": self.create_user,
            "manage": sorted(self.manage),
            "write": sorted(self.write),
            "read": sorted(self.read),
        }

    def _levels_from(self, level: str) -> Iterable[frozenset[str]]:
        if level not in LEVELS:
            raise ValueError(f"unknown permission level {level!r}, expected one of {LEVELS}")
        return (getattr(self, lv) for lv in LEVELS[LEVELS.index(level) :])

    def can(self, level: str, name: str | None) -> bool:
        """May this key act at ``level`` on ``name`` (``"session.job"``, a session
        name, or None for everything)?"""
        if self.admin:
            return True
        if name is None:
            return any("*" in entries for entries in self._levels_from(level))
        parts = _split(name)
        if parts is None:
            return self.can(level, None)
        session, job = parts
        full = session if job is None else f"{session}.{job}"
        # Exact membership on the parsed parts, never a prefix test: entry "prod"
        # must not match "production.web".
        return any(
            "*" in entries or session in entries or full in entries
            for entries in self._levels_from(level)
        )

    def can_any(self, level: str) -> bool:
        """Does this key have ``level`` on anything at all (to show a listing)?"""
        return self.admin or any(entries for entries in self._levels_from(level))

    def readable(self, name: str) -> bool:
        return self.can("read", name)

    def not_covered_by(self, other: Permissions, field: str = "permissions") -> str | None:
        """None when a key holding ``other`` could hand out ``self``; otherwise the
        reason, naming the first field of ``self`` that is broader."""
        if other.admin:
            return None
        broader = "is broader than this key's own rights"
        if self.admin:
            return f"{field}.admin: true {broader}"
        if self.create_key and not other.create_key:
            return f"{field}.create_key: true {broader}"
        if self.create_user and not other.create_user:
            return f"{field}.create_user: true {broader}"
        for level in reversed(LEVELS):
            for entry in sorted(getattr(self, level)):
                # "*" is asked as None, so only a "*" of other's covers it; "s" as
                # a session-wide name, so only "*" or "s" covers it.
                if not other.can(level, None if entry == "*" else entry):
                    return f"{field}.{level}: {entry!r} {broader}"
        return None


def _name(key: object) -> str:
    return key if isinstance(key, str) else _short(key)


ADMIN = Permissions(admin=True, create_key=True, create_user=True, manage=frozenset({"*"}))

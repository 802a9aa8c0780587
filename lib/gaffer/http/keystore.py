"""Where the HTTP API keeps its API keys and users: one SQLite file, secrets hashed.

A key is ``{id}.{secret}``: the id is public (listings, ``parent`` links, logs),
the secret is shown once, when the key is created, and only its scrypt hash is
stored. Users' passwords are stored the same way. The file is created 0600 in a
0700 directory.

Threading: the event loop never waits on SQLite or scrypt. One dedicated worker
thread owns the connection and runs every query and every hash; the loop awaits
it. Reads are answered synchronously from an in-memory mirror loaded at
:meth:`AuthStore.open`, which a write updates only once its transaction has
committed. A write's existence checks (the parent key, a user's key, the user
being updated) run in the worker against the database itself, so writes racing
each other cannot leave a dangling reference; and because the worker runs
writes one at a time and the mirror is updated in the same order, the mirror
never disagrees with the file.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from gaffer.errors import AlreadyExists, BadRequest, Forbidden, NotFound
from gaffer.http.permissions import Permissions

T = TypeVar("T")

USER_ADMIN = 0  # gaffer 0.5's user_type values
USER_USER = 1
USER_TYPES = (USER_ADMIN, USER_USER)

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
TOKEN_CACHE_SIZE = 1024
MAX_PASSWORD = 1024
MAX_LABEL = 256
# Far longer than any token we mint; a longer one is refused before it costs a hash.
MAX_TOKEN = 256

_USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
# User.to_dict merges ``extra`` into the record; these would overwrite (or pose as)
# the real fields.
_RESERVED_EXTRA = frozenset({"username", "user_type", "key", "password"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    permissions TEXT NOT NULL,
    parent TEXT,
    "user" TEXT,
    created REAL NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_parent ON keys (parent);
CREATE INDEX IF NOT EXISTS keys_user ON keys ("user");
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    user_type INTEGER NOT NULL,
    key TEXT,
    extra TEXT NOT NULL
);
"""
_SCHEMA_VERSION = 1

_KEY_COLUMNS = 'id, label, permissions, parent, "user", created, hash'
_USER_COLUMNS = "username, password, user_type, key, extra"

# Rows as the worker hands them to the loop: (id, label, permissions JSON, parent,
# user, created, hash) and (username, password hash, user_type, key, extra JSON).
_KeyRow = tuple[str, str, str, str | None, str | None, float, str]
_UserRow = tuple[str, str, int, str | None, str]


@dataclass(frozen=True)
class ApiKey:
    """A key as the API shows it; the secret and its hash never leave the store."""

    id: str
    label: str
    permissions: Permissions
    parent: str | None
    user: str | None
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.id,
            "label": self.label,
            "permissions": self.permissions.to_dict(),
            "parent": self.parent,
            "user": self.user,
            "created": self.created,
        }


@dataclass(frozen=True)
class User:
    """A user as the API shows it; the password hash never leaves the store."""

    username: str
    user_type: int
    key: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "username": self.username,
            "user_type": self.user_type,
            "key": self.key,
        }
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out


# -- hashing (worker thread only: scrypt takes tens of milliseconds) ---------------


def _scrypt(secret: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL refuses anything above 32 MiB unless told otherwise; allow what the
    # parameters need so n can be raised later without touching this.
    maxmem = min(128 * r * (n + p + 2) + 2**20, 2**31 - 1)
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def hash_secret(secret: str, n: int = SCRYPT_N) -> str:
    """``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``: the parameters travel with the
    hash, so raising them later leaves existing hashes verifiable."""
    salt = os.urandom(16)
    digest = _scrypt(secret.encode(), salt, n, SCRYPT_R, SCRYPT_P, 32)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_secret(stored: str, secret: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        got = _scrypt(secret.encode(), bytes.fromhex(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(got, expected)


# -- validation ---------------------------------------------------------------------


def _check_username(username: object) -> str:
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        got = repr(username) if len(repr(username)) <= 80 else repr(username)[:77] + "..."
        raise BadRequest(f"username: expected 1 to 64 characters of A-Z a-z 0-9 _ . @ -, got {got}")
    return username


def _check_password(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise BadRequest("password: expected a non-empty string")
    if len(password) > MAX_PASSWORD:
        raise BadRequest(f"password: longer than {MAX_PASSWORD} characters")
    try:
        password.encode()
    except UnicodeEncodeError:
        raise BadRequest("password: not valid unicode") from None
    return password


def _check_user_type(user_type: object) -> int:
    # bool is an int subclass; True must not pass for 1.
    if type(user_type) is not int or user_type not in USER_TYPES:
        raise BadRequest(f"user_type: expected 0 (admin) or 1 (user), got {user_type!r}")
    return user_type


def _check_extra(extra: object) -> dict[str, Any]:
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise BadRequest(f"extra: expected an object, got {type(extra).__name__}")
    for k in extra:
        if not isinstance(k, str):
            raise BadRequest(f"extra: keys must be strings, got {k!r}")
        if k in _RESERVED_EXTRA:
            raise BadRequest(f"extra.{k}: reserved field")
    try:
        # The round trip both proves it can be stored and detaches it from the
        # caller's object, so later changes to theirs do not reach the mirror.
        copied: dict[str, Any] = json.loads(json.dumps(extra, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise BadRequest(f"extra: not storable as JSON: {e}") from None
    return copied


def _check_id(fld: str, v: object) -> str:
    if not isinstance(v, str) or not v:
        raise BadRequest(f"{fld}: expected a key id, got {v!r}")
    return v


def _key_from_row(row: _KeyRow) -> ApiKey:
    key_id, label, perms, parent, user, created, _ = row
    permissions = Permissions.from_dict(json.loads(perms), f"key {key_id}: permissions")
    return ApiKey(key_id, label, permissions, parent, user, created)


def _user_from_row(row: _UserRow) -> User:
    username, _, user_type, key, extra = row
    return User(username, user_type, key, json.loads(extra))


def _copy_user(user: User) -> User:
    # ``extra`` is the one mutable part; hand out copies so no caller edits the mirror.
    return replace(user, extra=copy.deepcopy(user.extra))


# -- worker-side helpers: take the connection, run inside a transaction --------------


def _key_exists(conn: sqlite3.Connection, key_id: str) -> bool:
    return conn.execute("SELECT 1 FROM keys WHERE id = ?", (key_id,)).fetchone() is not None


def _user_row(conn: sqlite3.Connection, username: str) -> _UserRow | None:
    row: _UserRow | None = conn.execute(
        f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,)
    ).fetchone()
    return row


def _with_descendants(conn: sqlite3.Connection, roots: list[str]) -> list[str]:
    """``roots`` and every key minted from them, parents before children."""
    out: list[str] = []
    seen: set[str] = set()
    todo = deque(roots)
    while todo:
        key_id = todo.popleft()
        if key_id in seen:  # a corrupt file with a cycle must not loop forever
            continue
        seen.add(key_id)
        out.append(key_id)
        todo.extend(r[0] for r in conn.execute("SELECT id FROM keys WHERE parent = ?", (key_id,)))
    return out


def _delete_keys(conn: sqlite3.Connection, ids: list[str]) -> None:
    conn.executemany("DELETE FROM keys WHERE id = ?", [(i,) for i in ids])
    conn.executemany("UPDATE users SET key = NULL WHERE key = ?", [(i,) for i in ids])


class AuthStore:
    """API keys and users, persisted in SQLite (``path`` None: in memory only)."""

    def __init__(self, path: str | os.PathLike[str] | None, *, scrypt_n: int = SCRYPT_N) -> None:
        if scrypt_n < 2 or scrypt_n & (scrypt_n - 1):
            raise ValueError(f"scrypt_n must be a power of 2 above 1, got {scrypt_n}")
        self.path = None if path is None else os.fspath(path)
        self._n = scrypt_n
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched by the worker thread only
        self._keys: dict[str, ApiKey] = {}
        self._key_hashes: dict[str, str] = {}
        self._users: dict[str, User] = {}
        self._password_hashes: dict[str, str] = {}
        # sha256(token) -> key id, oldest first. Keyed by a digest so the tokens
        # themselves are not kept in memory.
        self._token_cache: OrderedDict[bytes, str] = OrderedDict()
        # Unknown users and keys are checked against this so that they cost the
        # same scrypt as known ones and timing does not reveal which names exist.
        self._decoy = (
            f"scrypt${scrypt_n}${SCRYPT_R}${SCRYPT_P}${os.urandom(16).hex()}${os.urandom(32).hex()}"
        )

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file (0600) and its directory (0700) if needed, the tables,
        and load everything into memory."""
        if self._executor is not None:
            raise RuntimeError("AuthStore is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gaffer-authstore")
        try:
            key_rows, user_rows = await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self._keys.clear()
        self._key_hashes.clear()
        self._users.clear()
        self._password_hashes.clear()
        self._token_cache.clear()
        for krow in key_rows:
            self._put_key(krow)
        for urow in user_rows:
            self._put_user(urow)

    def _open_sync(self) -> tuple[list[_KeyRow], list[_UserRow]]:
        if self.path is not None:
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                os.makedirs(parent, mode=0o700)
            # Create it ourselves so it never exists with the umask's mode, and
            # tighten a file someone left readable. SQLite gives its journal the
            # mode of the database.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        conn = sqlite3.connect(self.path or ":memory:", isolation_level=None)
        try:
            # Overwrite deleted rows, so a deleted key's hash does not linger in
            # free pages of the file.
            conn.execute("PRAGMA secure_delete = ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                # Written by a newer gaffer; guessing at its layout could lose keys.
                raise RuntimeError(f"{self.path}: schema version {version} is newer than ours")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            keys = conn.execute(f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY created, id").fetchall()
            users = conn.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username").fetchall()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return keys, users

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await self._run(self._close_sync)
        finally:
            self._executor = None
            self._token_cache.clear()
            # The close job was the last one, so the thread exits on its own;
            # waiting for it here would block the loop.
            executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- running on the worker ---------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise RuntimeError("AuthStore is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _write(
        self, work: Callable[[sqlite3.Connection], T], apply: Callable[[T], None]
    ) -> T:
        """Run ``work`` in one transaction on the worker, then ``apply`` its result
        to the mirror.

        ``apply`` is a done-callback and the future is shielded: if the caller is
        cancelled while the transaction runs, the commit still happens and so must
        the mirror update. Callbacks run in completion order, which is the worker's
        order, so the mirror sees the writes in the order the file did."""
        if self._executor is None:
            raise RuntimeError("AuthStore is not open")
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self._transaction, work)

        def done(f: asyncio.Future[T]) -> None:
            if not f.cancelled() and f.exception() is None:
                apply(f.result())

        fut.add_done_callback(done)
        return await asyncio.shield(fut)

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("AuthStore is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    # -- the mirror (event loop only) --------------------------------------------------

    def _put_key(self, row: _KeyRow) -> ApiKey:
        key = _key_from_row(row)
        self._keys[key.id] = key
        self._key_hashes[key.id] = row[6]
        return key

    def _put_user(self, row: _UserRow) -> User:
        user = _user_from_row(row)
        self._users[user.username] = user
        self._password_hashes[user.username] = row[1]
        return user

    def _drop_keys(self, ids: list[str]) -> None:
        gone = set(ids)
        for key_id in ids:
            self._keys.pop(key_id, None)
            self._key_hashes.pop(key_id, None)
        for name, user in list(self._users.items()):
            if user.key in gone:
                self._users[name] = replace(user, key=None)
        for digest, key_id in list(self._token_cache.items()):
            if key_id in gone:
                del self._token_cache[digest]

    # -- keys --------------------------------------------------------------------------

    async def create_key(
        self,
        permissions: Permissions,
        label: str = "",
        parent: str | None = None,
        user: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Mint a key; returns it and its token ``{id}.{secret}``, which is never
        available again. ``parent`` (the minting key) must exist and hold at least
        ``permissions``. ``user`` need not exist yet: a user's own key is minted
        before the user, so that a failed key leaves no keyless user behind."""
        if not isinstance(permissions, Permissions):
            raise TypeError(f"permissions must be a Permissions, got {type(permissions).__name__}")
        if not isinstance(label, str) or len(label) > MAX_LABEL:
            raise BadRequest(f"label: expected a string of at most {MAX_LABEL} characters")
        if parent is not None:
            _check_id("parent", parent)
        if user is not None and not isinstance(user, str):
            raise BadRequest(f"user: expected a username, got {type(user).__name__}")
        perms_json = json.dumps(permissions.to_dict())
        n = self._n

        def work(conn: sqlite3.Connection) -> tuple[_KeyRow, str]:
            if parent is not None:
                got = conn.execute("SELECT permissions FROM keys WHERE id = ?", (parent,))
                row = got.fetchone()
                if row is None:
                    raise NotFound(f"key {parent} not found")
                # Checked here as well as by the caller: whatever the API does, a
                # key can never mint one broader than itself.
                mine = Permissions.from_dict(json.loads(row[0]))
                reason = permissions.not_covered_by(mine)
                if reason is not None:
                    raise Forbidden(reason)
            secret = secrets.token_urlsafe(24)
            digest = hash_secret(secret, n)
            while True:
                key_row: _KeyRow = (
                    secrets.token_hex(8),
                    label,
                    perms_json,
                    parent,
                    user,
                    time.time(),
                    digest,
                )
                try:
                    conn.execute(
                        f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES (?,?,?,?,?,?,?)", key_row
                    )
                except sqlite3.IntegrityError:
                    continue  # that id is taken (1 in 2**64): draw another
                return key_row, f"{key_row[0]}.{secret}"

        def apply(result: tuple[_KeyRow, str]) -> None:
            self._put_key(result[0])

        key_row, token = await self._write(work, apply)
        # From the row, not the mirror: a write that completed since may have
        # deleted it already.
        return _key_from_row(key_row), token

    def get_key(self, key: str) -> ApiKey:
        """A key by its id, or by a full token (whose secret is not checked)."""
        key_id = key.partition(".")[0] if isinstance(key, str) else ""
        try:
            return self._keys[key_id]
        except KeyError:
            # Name the id only: the rest of a token is a secret, not for error logs.
            raise NotFound(f"key {key_id} not found") from None

    def all_keys(self) -> list[ApiKey]:
        return list(self._keys.values())

    def subkeys(self, key_id: str) -> list[ApiKey]:
        """Every key minted from ``key_id``, directly or not, parents first."""
        self.get_key(key_id)
        children: dict[str, list[ApiKey]] = {}
        for k in self._keys.values():
            if k.parent is not None:
                children.setdefault(k.parent, []).append(k)
        out: list[ApiKey] = []
        seen = {key_id}
        todo = deque([key_id])
        while todo:
            for child in children.get(todo.popleft(), []):
                if child.id not in seen:
                    seen.add(child.id)
                    out.append(child)
                    todo.append(child.id)
        return out

    def is_ancestor(self, ancestor_id: str, key_id: str) -> bool:
        """Was ``key_id`` minted, directly or not, from ``ancestor_id``? (Not
        true of a key and itself.)"""
        seen: set[str] = set()
        key = self._keys.get(key_id)
        while key is not None and key.parent is not None and key.id not in seen:
            if key.parent == ancestor_id:
                return True
            seen.add(key.id)
            key = self._keys.get(key.parent)
        return False

    async def delete_key(self, key_id: str) -> list[str]:
        """Delete a key and every key minted from it; returns their ids. Users
        holding one of them are left without a key."""
        _check_id("key", key_id)

        def work(conn: sqlite3.Connection) -> list[str]:
            if not _key_exists(conn, key_id):
                raise NotFound(f"key {key_id} not found")
            ids = _with_descendants(conn, [key_id])
            _delete_keys(conn, ids)
            return ids

        return await self._write(work, self._drop_keys)

    def is_cached(self, token: str) -> bool:
        """Whether ``token`` was verified recently (checking it costs no scrypt)."""
        if not isinstance(token, str) or not token.isascii():
            return False
        return hashlib.sha256(token.encode()).digest() in self._token_cache

    async def authenticate_key(self, token: str) -> ApiKey | None:
        """The key of a valid token, or None (unknown id, malformed token, wrong
        secret)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or not token.isascii():
            return None
        key_id, _, secret = token.partition(".")
        if not key_id or not secret:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._token_cache.get(digest)
        if cached is not None:
            key = self._keys.get(cached)
            if key is not None:
                self._token_cache.move_to_end(digest)
                return key
            del self._token_cache[digest]
        stored = self._key_hashes.get(key_id)
        ok = await self._run(lambda: verify_secret(stored or self._decoy, secret))
        # The key may have been deleted while the hash ran; a stale answer must not
        # revive it (nor land in the cache after delete_key emptied it).
        if not ok or stored is None or self._key_hashes.get(key_id) != stored:
            return None
        self._token_cache[digest] = key_id
        while len(self._token_cache) > TOKEN_CACHE_SIZE:
            self._token_cache.popitem(last=False)
        return self._keys[key_id]

    # -- users -------------------------------------------------------------------------

    async def create_user(
        self,
        username: str,
        password: str,
        user_type: int = USER_USER,
        key: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> User:
        _check_username(username)
        _check_password(password)
        _check_user_type(user_type)
        if key is not None:
            _check_id("key", key)
        extra_json = json.dumps(_check_extra(extra))
        n = self._n

        def work(conn: sqlite3.Connection) -> _UserRow:
            if _user_row(conn, username) is not None:
                raise AlreadyExists(f"user {username} already exists")
            if key is not None and not _key_exists(conn, key):
                raise NotFound(f"key {key} not found")
            row: _UserRow = (username, hash_secret(password, n), user_type, key, extra_json)
            conn.execute(f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?,?,?,?,?)", row)
            return row

        return _user_from_row(await self._write(work, self._apply_user))

    def _apply_user(self, row: _UserRow) -> None:
        self._put_user(row)

    def get_user(self, username: str) -> User:
        try:
            return _copy_user(self._users[username])
        except (KeyError, TypeError):
            raise NotFound(f"user {username} not found") from None

    def all_users(self) -> list[User]:
        return [_copy_user(u) for u in self._users.values()]

    async def update_user(
        self,
        username: str,
        *,
        password: str | None = None,
        user_type: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> User:
        """Change what is given; ``extra`` replaces the old one whole."""
        if password is not None:
            _check_password(password)
        if user_type is not None:
            _check_user_type(user_type)
        extra_json = None if extra is None else json.dumps(_check_extra(extra))
        n = self._n

        def work(conn: sqlite3.Connection) -> _UserRow:
            old = _user_row(conn, username)
            if old is None:
                raise NotFound(f"user {username} not found")
            row: _UserRow = (
                username,
                old[1] if password is None else hash_secret(password, n),
                old[2] if user_type is None else user_type,
                old[3],
                old[4] if extra_json is None else extra_json,
            )
            conn.execute(
                "UPDATE users SET password = ?, user_type = ?, extra = ? WHERE username = ?",
                (row[1], row[2], row[4], username),
            )
            return row

        return _user_from_row(await self._write(work, self._apply_user))

    async def set_password(self, username: str, password: str) -> None:
        await self.update_user(username, password=password)

    async def set_user_key(self, username: str, key_id: str | None) -> None:
        """Give the user ``key_id`` (which must exist); None leaves them keyless."""
        if key_id is not None:
            _check_id("key", key_id)

        def work(conn: sqlite3.Connection) -> _UserRow:
            old = _user_row(conn, username)
            if old is None:
                raise NotFound(f"user {username} not found")
            if key_id is not None and not _key_exists(conn, key_id):
                raise NotFound(f"key {key_id} not found")
            conn.execute("UPDATE users SET key = ? WHERE username = ?", (key_id, username))
            return (old[0], old[1], old[2], key_id, old[4])

        await self._write(work, self._apply_user)

    async def delete_user(self, username: str) -> None:
        """Delete the user, the keys that belong to them and every key minted
        from those."""

        def work(conn: sqlite3.Connection) -> list[str]:
            if conn.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount == 0:
                raise NotFound(f"user {username} not found")
            roots = [
                r[0] for r in conn.execute('SELECT id FROM keys WHERE "user" = ?', (username,))
            ]
            ids = _with_descendants(conn, roots)
            _delete_keys(conn, ids)
            return ids

        def apply(ids: list[str]) -> None:
            self._users.pop(username, None)
            self._password_hashes.pop(username, None)
            self._drop_keys(ids)

        await self._write(work, apply)

    async def authenticate_user(self, username: str, password: str) -> User | None:
        """The user, if the password is theirs; None otherwise."""
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        if len(password) > MAX_PASSWORD:
            return None
        stored = self._password_hashes.get(username)
        ok = await self._run(lambda: verify_secret(stored or self._decoy, password))
        # Refuse if the password changed (or the user went) while the hash ran: the
        # password just checked may be the one being replaced.
        if not ok or stored is None or self._password_hashes.get(username) != stored:
            return None
        return self.get_user(username)

"""The API-key permission model and the SQLite key/user store."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from gaffer.errors import AlreadyExists, BadRequest, Forbidden, NotFound
from gaffer.http import keystore
from gaffer.http.keystore import AuthStore
from gaffer.http.permissions import ADMIN, LEVELS, Permissions

T = TypeVar("T")
FAST = 2**10  # scrypt n for tests; the default is checked once


def P(**kw: Any) -> Permissions:
    return Permissions.from_dict(kw)


def with_store(
    path: Path | None, fn: Callable[[AuthStore], Awaitable[T]], scrypt_n: int = FAST
) -> T:
    """Open a store, run ``fn`` on it, close it; all in one asyncio.run."""

    async def main() -> T:
        store = AuthStore(path, scrypt_n=scrypt_n)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def bad_request(fn: Callable[[], object]) -> str:
    with pytest.raises(BadRequest) as e:
        fn()
    return e.value.reason


# -- Permissions.from_dict / to_dict ----------------------------------------------------


def test_from_dict_normalises_and_to_dict_sorts() -> None:
    p = Permissions.from_dict(
        {"create_key": True, "manage": ["web/api", "prod"], "read": ["*", "a.b.c", "a.b.c"]}
    )
    assert p == Permissions(
        create_key=True, manage=frozenset({"web.api", "prod"}), read=frozenset({"*", "a.b.c"})
    )
    assert p.to_dict() == {
        "admin": False,
        "create_key": True,
        "create_user": False,
        "manage": ["prod", "web.api"],
        "write": [],
        "read": ["*", "a.b.c"],
    }
    assert Permissions.from_dict({}) == Permissions()
    assert Permissions.from_dict(p.to_dict()) == p


def test_from_dict_errors_name_the_field() -> None:
    assert bad_request(lambda: Permissions.from_dict({"manage": 3})) == (
        "permissions.manage: expected a list of '*', session or session.job entries, got 3"
    )
    assert bad_request(lambda: Permissions.from_dict({"colour": ["red"]})) == (
        "permissions.colour: unknown permission"
    )
    assert bad_request(lambda: Permissions.from_dict(["read"])).startswith(
        "permissions: expected an object"
    )
    # A string is not a list of its characters (0.5's hole).
    assert bad_request(lambda: Permissions.from_dict({"read": "prod"})).startswith(
        "permissions.read: expected a list"
    )
    assert bad_request(lambda: Permissions.from_dict({"write": None})).startswith(
        "permissions.write: expected a list"
    )
    for flag in ("admin", "create_key", "create_user"):
        for v in (1, "true", None):
            assert bad_request(lambda: Permissions.from_dict({flag: v})).startswith(  # noqa: B023
                f"permissions.{flag}: expected true or false"
            )
    assert bad_request(lambda: Permissions.from_dict({"read": 3}, field="key.perms")).startswith(
        "key.perms.read: "
    )


@pytest.mark.parametrize(
    "entry",
    ["", " ", " prod", "prod ", "a b", "a\tb", "a\nb", 3, None, True, ["a"],
     "s.", ".j", "s..j", "s/", "/j", "a.b/c", "s/j/k", "s.j/k", "s.*", "*.j", "pr*d", "**"],
)  # fmt: skip
def test_from_dict_rejects_bad_entries(entry: object) -> None:
    reason = bad_request(lambda: Permissions.from_dict({"write": ["ok", entry]}))
    assert reason.startswith("permissions.write[1]: expected '*', a session or session.job")


def test_direct_construction_validates_too() -> None:
    assert Permissions(read=frozenset({"a/b"})).read == {"a.b"}
    assert bad_request(lambda: Permissions(manage=frozenset({""}))).startswith(
        "permissions.manage[0]"
    )
    assert bad_request(lambda: Permissions(admin=1)).startswith(  # type: ignore[arg-type]
        "permissions.admin"
    )


# -- can -----------------------------------------------------------------------------


def test_can_star_matches_everything() -> None:
    p = P(read=["*"])
    for name in (None, "prod", "prod.web", "a.b.c"):
        assert p.can("read", name)
        assert not p.can("write", name)


def test_can_session_entry() -> None:
    p = P(write=["prod"])
    for name in ("prod", "prod.web", "prod.web.x", "prod/web"):
        assert p.can("write", name), name
        assert p.can("read", name), name
        assert not p.can("manage", name), name
    for other in (None, "production", "production.web", "pro", "other.prod", "default.prod"):
        assert not p.can("write", other), other
        assert not p.can("read", other), other


def test_can_job_entry() -> None:
    p = P(manage=["prod.web"])
    assert p.can("manage", "prod.web")
    assert p.can("read", "prod/web")
    for name in (None, "prod", "prod.webx", "prod.web.x", "prod.we", "other.web"):
        assert not p.can("read", name), name


def test_can_level_implication() -> None:
    for i, level in enumerate(LEVELS):
        p = Permissions(**{level: frozenset({"s"})})  # type: ignore[arg-type]
        for j, asked in enumerate(LEVELS):
            assert p.can(asked, "s.j") is (j <= i), (level, asked)
            assert p.can_any(asked) is (j <= i), (level, asked)


def test_can_admin_and_misc() -> None:
    assert ADMIN.can("manage", None) and ADMIN.can("manage", "x.y")
    assert Permissions(admin=True).can("manage", None)
    assert Permissions(admin=True).can_any("manage")
    assert not Permissions().can_any("read")
    # Something that is no job name is covered by "*" only.
    assert not P(read=["s"]).can("read", "s.")
    assert P(read=["*"]).can("read", "s.")
    assert P(read=["s"]).readable("s.j") and not P(read=["s"]).readable("t.j")
    with pytest.raises(ValueError):
        P(read=["*"]).can("delete", "s")


# -- not_covered_by ------------------------------------------------------------------

NONE = Permissions()


@pytest.mark.parametrize(
    ("mine", "other", "field"),
    [
        (Permissions(admin=True), Permissions(create_key=True, manage=frozenset({"*"})), "admin"),
        (Permissions(create_key=True), P(manage=["*"], create_user=True), "create_key"),
        (Permissions(create_user=True), P(manage=["*"], create_key=True), "create_user"),
    ],
)
def test_not_covered_by_flags(mine: Permissions, other: Permissions, field: str) -> None:
    assert mine.not_covered_by(other) == (
        f"permissions.{field}: true is broader than this key's own rights"
    )
    assert mine.not_covered_by(Permissions(admin=True)) is None
    if field != "admin":
        assert mine.not_covered_by(Permissions(**{field: True})) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("level", LEVELS)
def test_not_covered_by_entries(level: str) -> None:
    below = LEVELS[: LEVELS.index(level)]
    at_or_above = LEVELS[LEVELS.index(level) :]
    cases = {  # entry -> the entries of another key that cover it
        "*": {"*"},
        "s": {"*", "s"},
        "s.j": {"*", "s", "s.j"},
    }
    for entry, covering in cases.items():
        mine = Permissions(**{level: frozenset({entry})})  # type: ignore[arg-type]
        reason = f"permissions.{level}: {entry!r} is broader than this key's own rights"
        assert mine.not_covered_by(NONE) == reason
        assert mine.not_covered_by(Permissions(admin=True)) is None
        for other_entry in ("*", "s", "s.j", "t", "s.k", "t.j"):
            for other_level in LEVELS:
                other = Permissions(**{other_level: frozenset({other_entry})})  # type: ignore[arg-type]
                covered = other_entry in covering and other_level in at_or_above
                got = mine.not_covered_by(other)
                assert got == (None if covered else reason), (entry, other_entry, other_level)
                assert other_level not in below or got is not None


def test_not_covered_by_names_first_broader_field() -> None:
    mine = P(create_user=True, manage=["a"], read=["*"])
    assert mine.not_covered_by(P(manage=["a"], read=["*"])).startswith(  # type: ignore[union-attr]
        "permissions.create_user:"
    )
    assert mine.not_covered_by(P(create_user=True, read=["*"])).startswith(  # type: ignore[union-attr]
        "permissions.manage: 'a'"
    )
    assert mine.not_covered_by(P(create_user=True, manage=["a"], write=["b"])) == (
        "permissions.read: '*' is broader than this key's own rights"
    )
    assert mine.not_covered_by(P(create_user=True, manage=["*"])) is None
    assert mine.not_covered_by(ADMIN) is None
    assert NONE.not_covered_by(NONE) is None
    assert ADMIN.not_covered_by(ADMIN) is None


# -- keys ----------------------------------------------------------------------------


def test_create_get_authenticate_key(tmp_path: Path) -> None:
    async def main(store: AuthStore) -> None:
        key, token = await store.create_key(P(read=["prod"]), label="ci")
        key_id, _, secret = token.partition(".")
        assert key.id == key_id and len(key_id) == 16 and len(secret) >= 32
        assert key.label == "ci" and key.parent is None and key.user is None
        assert store.get_key(key_id) == key
        assert store.get_key(token) == key
        assert store.all_keys() == [key]
        d = key.to_dict()
        assert d["key"] == key_id and d["permissions"] == P(read=["prod"]).to_dict()
        assert set(d) == {"key", "label", "permissions", "parent", "user", "created"}
        assert secret not in repr(d)

        assert await store.authenticate_key(token) == key
        assert await store.authenticate_key(token) == key  # from the cache
        assert await store.authenticate_key(f"{key_id}.{secret[:-1]}x") is None
        assert await store.authenticate_key(f"{key_id}.") is None
        for malformed in ("", key_id, f".{secret}", "x" * 300, f"{key_id}.sécret", 3, None):
            assert await store.authenticate_key(malformed) is None  # type: ignore[arg-type]
        assert await store.authenticate_key(f"{'0' * 16}.{secret}") is None

        with pytest.raises(NotFound) as e:
            store.get_key(f"{'0' * 16}.{secret}")
        assert secret not in e.value.reason
        with pytest.raises(NotFound):
            await store.create_key(P(), parent="nope")
        with pytest.raises(BadRequest):
            await store.create_key(P(), label="x" * 1000)
        assert store.all_keys() == [key]

    with_store(tmp_path / "keys.db", main)


def test_child_key_must_be_covered_by_parent(tmp_path: Path) -> None:
    async def main(store: AuthStore) -> None:
        parent, _ = await store.create_key(P(create_key=True, write=["prod"]))
        child, _ = await store.create_key(P(read=["prod.web"]), parent=parent.id)
        assert child.parent == parent.id
        with pytest.raises(Forbidden) as e:
            await store.create_key(P(write=["*"]), parent=parent.id)
        assert e.value.reason == "permissions.write: '*' is broader than this key's own rights"
        with pytest.raises(Forbidden):
            await store.create_key(P(manage=["prod"]), parent=parent.id)
        admin, _ = await store.create_key(ADMIN)
        await store.create_key(ADMIN, parent=admin.id)
        assert len(store.all_keys()) == 4

    with_store(None, main)


def test_db_file_stores_no_secret_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "auth.db"

    async def main(store: AuthStore) -> tuple[str, str]:
        _, token = await store.create_key(P(read=["*"]), label="label-in-file")
        await store.create_user("alice", "correct horse battery staple")
        return token, "correct horse battery staple"

    token, password = with_store(path, main)
    data = path.read_bytes()
    assert b"label-in-file" in data  # we are looking at the right file
    secret = token.partition(".")[2]
    assert secret.encode() not in data
    assert token.encode() not in data
    assert password.encode() not in data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for (hash_,) in sqlite3.connect(path).execute("SELECT hash FROM keys"):
        assert hash_.startswith(f"scrypt${FAST}$8$1$")


def test_existing_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)

    async def main(store: AuthStore) -> None:
        pass

    with_store(path, main)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_default_scrypt_parameters_in_stored_hash(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"

    async def main(store: AuthStore) -> str:
        _, token = await store.create_key(P(read=["*"]))
        return token

    token = with_store(path, main, scrypt_n=2**14)
    ((stored,),) = sqlite3.connect(path).execute("SELECT hash FROM keys").fetchall()
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32
    assert keystore.verify_secret(stored, token.partition(".")[2])
    assert not keystore.verify_secret(stored, "wrong")


def test_persistence_across_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"

    async def main() -> None:
        store = AuthStore(path, scrypt_n=FAST)
        await store.open()
        root, root_token = await store.create_key(ADMIN, label="root")
        child, child_token = await store.create_key(P(read=["a"]), parent=root.id)
        await store.create_user("bob", "pw1", user_type=0, key=child.id, extra={"email": "b@x"})
        await store.close()
        with pytest.raises(RuntimeError):
            await store.authenticate_key(root_token)

        again = AuthStore(path, scrypt_n=FAST)
        await again.open()
        assert again.all_keys() == [root, child]
        assert await again.authenticate_key(child_token) == child
        assert again.get_user("bob").to_dict() == {
            "username": "bob",
            "user_type": 0,
            "key": child.id,
            "email": "b@x",
        }
        assert await again.authenticate_user("bob", "pw1") is not None
        assert again.is_ancestor(root.id, child.id)
        await again.close()

        # The same object can be opened again after close.
        await store.open()
        assert [k.id for k in store.all_keys()] == [root.id, child.id]
        await store.close()

    asyncio.run(main())


def test_delete_key_cascades_and_invalidates_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    real_verify = keystore.verify_secret

    def counting_verify(stored: str, secret: str) -> bool:
        verified.append(threading.current_thread().name)
        return real_verify(stored, secret)

    monkeypatch.setattr(keystore, "verify_secret", counting_verify)

    async def main(store: AuthStore) -> None:
        a, _ = await store.create_key(ADMIN)
        b, b_tok = await store.create_key(P(create_key=True, write=["s"]), parent=a.id)
        c, c_tok = await store.create_key(P(read=["s.j"]), parent=b.id)
        d, d_tok = await store.create_key(P(read=["t"]), parent=a.id)
        await store.create_user("carol", "pw", key=c.id)
        await store.create_user("dave", "pw", key=d.id)

        assert [k.id for k in store.subkeys(a.id)] == [b.id, d.id, c.id]
        assert store.subkeys(c.id) == []
        assert store.is_ancestor(a.id, c.id) and store.is_ancestor(b.id, c.id)
        assert not store.is_ancestor(c.id, c.id) and not store.is_ancestor(d.id, c.id)
        assert not store.is_ancestor(c.id, a.id)

        for tok in (b_tok, c_tok, d_tok):
            assert await store.authenticate_key(tok) is not None
        n = len(verified)
        assert await store.authenticate_key(c_tok) == c
        assert len(verified) == n  # a cached token costs no scrypt
        # Every hash ran on the store's worker, never on the loop's thread.
        assert verified and all(name.startswith("gaffer-authstore") for name in verified)

        assert await store.delete_key(b.id) == [b.id, c.id]
        assert {k.id for k in store.all_keys()} == {a.id, d.id}
        assert await store.authenticate_key(b_tok) is None
        assert await store.authenticate_key(c_tok) is None
        assert await store.authenticate_key(d_tok) == d
        assert store.get_user("carol").key is None
        assert store.get_user("dave").key == d.id
        with pytest.raises(NotFound):
            store.get_key(c.id)
        with pytest.raises(NotFound):
            await store.delete_key(b.id)
        with pytest.raises(NotFound):
            store.subkeys(b.id)

    path = tmp_path / "auth.db"
    with_store(path, main)
    rows = sqlite3.connect(path).execute("SELECT username, key FROM users ORDER BY 1").fetchall()
    assert rows[0] == ("carol", None)
    assert len(sqlite3.connect(path).execute("SELECT id FROM keys").fetchall()) == 2


def test_token_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore, "TOKEN_CACHE_SIZE", 2)

    async def main(store: AuthStore) -> None:
        tokens = [(await store.create_key(P(read=["*"])))[1] for _ in range(3)]
        for tok in tokens:
            assert await store.authenticate_key(tok) is not None
        assert len(store._token_cache) == 2
        assert set(store._token_cache.values()) == {t.partition(".")[0] for t in tokens[1:]}

    with_store(None, main)


def test_authenticate_racing_delete_is_refused() -> None:
    async def main(store: AuthStore) -> None:
        key, token = await store.create_key(P(read=["*"]))
        # The delete is on the worker when the authentication reads the key's hash;
        # the hash is checked after the delete committed, so the key must not come
        # back (nor be cached).
        delete = asyncio.ensure_future(store.delete_key(key.id))
        await asyncio.sleep(0)
        assert store.get_key(key.id) == key
        assert await store.authenticate_key(token) is None
        assert await delete == [key.id]
        assert store._token_cache == {}

    with_store(None, main)


def test_cancelled_write_still_reaches_the_mirror(tmp_path: Path) -> None:
    async def main(store: AuthStore) -> None:
        task = asyncio.ensure_future(store.create_user("erin", "pw"))
        await asyncio.sleep(0)  # submitted to the worker
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The worker runs writes in order, so once this one is done so is erin's.
        await store.create_user("frank", "pw")
        assert [u.username for u in store.all_users()] == ["erin", "frank"]

    path = tmp_path / "auth.db"
    with_store(path, main)
    names = sqlite3.connect(path).execute("SELECT username FROM users ORDER BY 1").fetchall()
    assert names == [("erin",), ("frank",)]


def test_not_open() -> None:
    store = AuthStore(None, scrypt_n=FAST)
    with pytest.raises(RuntimeError):
        asyncio.run(store.create_key(P()))
    with pytest.raises(ValueError):
        AuthStore(None, scrypt_n=1000)


# -- users ---------------------------------------------------------------------------


def test_users(tmp_path: Path) -> None:
    async def main(store: AuthStore) -> None:
        key, _ = await store.create_key(P(read=["*"]))
        alice = await store.create_user("alice", "s3cret", extra={"email": "a@example.com"})
        assert alice.user_type == 1 and alice.key is None
        assert alice.to_dict() == {
            "username": "alice",
            "user_type": 1,
            "key": None,
            "email": "a@example.com",
        }
        assert store.get_user("alice") == alice
        with pytest.raises(AlreadyExists):
            await store.create_user("alice", "other")
        with pytest.raises(NotFound):
            await store.create_user("zed", "pw", key="nope")
        with pytest.raises(NotFound):
            store.get_user("zed")

        assert await store.authenticate_user("alice", "s3cret") == alice
        assert await store.authenticate_user("alice", "S3cret") is None
        assert await store.authenticate_user("nobody", "s3cret") is None
        assert await store.authenticate_user("alice", "") is None

        await store.set_password("alice", "n3w")
        assert await store.authenticate_user("alice", "s3cret") is None
        assert await store.authenticate_user("alice", "n3w") is not None
        with pytest.raises(NotFound):
            await store.set_password("nobody", "x")

        with pytest.raises(NotFound):
            await store.set_user_key("alice", "nope")
        with pytest.raises(NotFound):
            await store.set_user_key("nobody", key.id)
        await store.set_user_key("alice", key.id)
        assert store.get_user("alice").key == key.id

        updated = await store.update_user("alice", user_type=0, extra={"team": "ops"})
        assert updated == store.get_user("alice")
        assert updated.to_dict() == {
            "username": "alice",
            "user_type": 0,
            "key": key.id,
            "team": "ops",
        }
        assert await store.authenticate_user("alice", "n3w") is not None

        # Copies out: editing one does not edit the store.
        store.get_user("alice").extra["team"] = "evil"
        assert store.get_user("alice").extra == {"team": "ops"}
        assert [u.username for u in store.all_users()] == ["alice"]

    with_store(tmp_path / "auth.db", main)


def test_user_validation_names_the_field() -> None:
    async def main(store: AuthStore) -> None:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"username": ""}, "username: "),
            ({"username": "a b"}, "username: "),
            ({"username": "x" * 65}, "username: "),
            ({"username": "ali/ce"}, "username: "),
            ({"username": 3}, "username: "),
            ({"password": ""}, "password: "),
            ({"password": "x" * 1025}, "password: "),
            ({"password": None}, "password: "),
            ({"password": "\ud800"}, "password: "),
            ({"user_type": 2}, "user_type: "),
            ({"user_type": True}, "user_type: "),
            ({"user_type": "1"}, "user_type: "),
            ({"extra": {"username": "root"}}, "extra.username: "),
            ({"extra": {"password": "x"}}, "extra.password: "),
            ({"extra": {"x": {1, 2}}}, "extra: "),
            ({"extra": []}, "extra: "),
        ]
        for override, prefix in cases:
            kw: dict[str, Any] = {"username": "ok_user.1@x-y", "password": "pw", **override}
            with pytest.raises(BadRequest) as e:
                await store.create_user(**kw)
            assert e.value.reason.startswith(prefix), (override, e.value.reason)
        assert store.all_users() == []
        await store.create_user("ok_user.1@x-y", "p" * 1024)
        with pytest.raises(BadRequest) as e:
            await store.update_user("ok_user.1@x-y", user_type=5)
        assert e.value.reason.startswith("user_type: ")

    with_store(None, main)


def test_delete_user_deletes_their_keys(tmp_path: Path) -> None:
    async def main(store: AuthStore) -> None:
        admin, _ = await store.create_key(ADMIN)
        # A user's key may be minted before the user (the API does so).
        g1, g1_tok = await store.create_key(P(create_key=True, read=["*"]), user="gina")
        await store.create_user("gina", "pw")
        await store.create_user("hal", "pw")
        g2, _ = await store.create_key(P(read=["x"]), parent=g1.id)
        h1, _ = await store.create_key(P(read=["*"]), user="hal", parent=admin.id)
        await store.set_user_key("gina", g1.id)
        await store.set_user_key("hal", g2.id)  # hal holds a key minted from gina's
        assert await store.authenticate_key(g1_tok) == g1

        await store.delete_user("gina")
        with pytest.raises(NotFound):
            store.get_user("gina")
        assert {k.id for k in store.all_keys()} == {admin.id, h1.id}
        assert await store.authenticate_key(g1_tok) is None
        assert await store.authenticate_user("gina", "pw") is None
        assert store.get_user("hal").key is None
        with pytest.raises(NotFound):
            await store.delete_user("gina")

    path = tmp_path / "auth.db"
    with_store(path, main)
    db = sqlite3.connect(path)
    assert db.execute("SELECT username FROM users").fetchall() == [("hal",)]
    assert len(db.execute("SELECT id FROM keys").fetchall()) == 2

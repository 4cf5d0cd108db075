"""Named care-team users: scrypt password hashes (the standard library), log-in sessions, CSRF tokens.

A password is stored as `scrypt$n$r$p$salt$hash` (hex); a log-in is a random token in an
HttpOnly, SameSite=Strict cookie, of which the database keeps only the SHA-256 (a copy of the
database gives no one a session). Each log-in has its own CSRF token, which every form posts.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Optional, Tuple

from edge import EdgeError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8", "replace"), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(digest) // 2)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Users:
    """Users and log-ins in the fleet database (edge.apps.fleet.store's tables)."""

    def __init__(self, store):
        import sqlalchemy as sa

        self.sa = sa
        self.store = store
        self.users = store.t["users"]
        self.logins = store.t["logins"]

    def count(self) -> int:
        return self.store.count("users")

    def add(self, name: str, password: str, by: str = "edge fleet user add") -> None:
        if not NAME.match(name):
            raise EdgeError(f"user name {name[:70]!r} must be 1-64 letters, digits or _ . @ - (starting with one of "
                            "the first two)")
        if len(password) < MIN_PASSWORD:
            raise EdgeError(f"the password must have at least {MIN_PASSWORD} characters")
        row = {"name": name, "password_hash": hash_password(password), "created_utc": _utc()}
        stmt = self.store._insert(self.users).values(**row)
        stmt = stmt.on_conflict_do_update(index_elements=[self.users.c.name],
                                          set_={"password_hash": stmt.excluded.password_hash})
        with self.store.engine.begin() as conn:
            conn.execute(stmt)
            self.store.add_audit(conn, by, "user set", name)

    def log_in(self, name: str, password: str, hours: float) -> Optional[Tuple[str, str]]:
        """(session token, csrf token) for a right name and password, else None."""
        sa = self.sa
        with self.store.engine.begin() as conn:
            row = conn.execute(sa.select(self.users.c.password_hash).where(self.users.c.name == name)).first()
            # Unknown names cost a hash too: timing does not tell which names exist.
            ok = check_password(password, row[0] if row else hash_password("x" * MIN_PASSWORD)) and row is not None
            self.store.add_audit(conn, name[:64] if ok else "-", "log-in" if ok else "log-in refused",
                                 None if ok else name[:64])
            if not ok:
                return None
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
            conn.execute(self.logins.delete().where(self.logins.c.expires < time.time()))
            conn.execute(self.logins.insert().values(token_hash=token_hash(token), user_name=name, csrf=csrf,
                                                     expires=time.time() + hours * 3600))
            return token, csrf

    def session(self, token: Optional[str]) -> Optional[Tuple[str, str]]:
        """(user, csrf token) of a live log-in, else None."""
        if not token:
            return None
        sa = self.sa
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(self.logins.c.user_name, self.logins.c.csrf, self.logins.c.expires)
                               .where(self.logins.c.token_hash == token_hash(token))).first()
        if row is None or row[2] < time.time():
            return None
        return row[0], row[1]

    def log_out(self, token: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(self.logins.delete().where(self.logins.c.token_hash == token_hash(token)))


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

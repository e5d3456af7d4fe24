"""The tokens file: who the callers are (token hashes, client certificate subjects)
and their roles.

    [[token]]
    name = "billing-worker"
    sha256 = "<64 hex digits>"        # of the clear token, which is never stored
    roles = ["worker"]
    types = ["billing"]               # optional: the worker calls it may make

    [[certificate]]
    subject = "worker-1.internal"     # CN or a SAN of a client certificate (mTLS)
    roles = ["worker"]

Tokens are 256 random bits, so a plain SHA-256 is enough to store them (no
password stretching needed: there is nothing to guess). A presented token is
hashed and compared with every entry with hmac.compare_digest, so the time a
check takes does not depend on how much of a hash matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncflow.core.ids import TASK_TYPE_RE
from asyncflow.errors import ConfigError
from asyncflow.server.auth.roles import ROLES

TOKEN_PREFIX = "aft_"
"""Marks an asyncflow token (secret scanners and people can tell what leaked)."""
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")
HASH_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Caller:
    """Who is calling: a token's or certificate's entry, or an anonymous caller."""

    name: str
    """The entry's name (token) or subject (certificate); for logs and limits."""
    roles: frozenset[str]
    types: frozenset[str] | None = None
    """Task types its worker calls may touch; None: every type."""
    via: str = "token"
    """"token", "certificate", or "anonymous" (auth is off)."""


@dataclass(frozen=True)
class _Token:
    digest: bytes
    caller: Caller


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_entry(name: str, token: str, roles: Iterable[str], types: Iterable[str] = ()) -> str:
    """The tokens file entry for a new token (what `asyncflow token create` prints)."""
    lines = [
        "[[token]]",
        f'name = "{name}"',
        f'sha256 = "{token_hash(token)}"',
        "roles = [" + ", ".join(f'"{r}"' for r in roles) + "]",
    ]
    if types:
        lines.append("types = [" + ", ".join(f'"{t}"' for t in types) + "]")
    return "\n".join(lines) + "\n"


def check_entry(name: str, roles: Iterable[str], types: Iterable[str] | None, where: str) -> None:
    """Refuse a name, role or type that is not allowed; the message says where."""
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: name {name!r} must match {NAME_RE.pattern}")
    roles = list(roles)
    if not roles or any(role not in ROLES for role in roles):
        raise ConfigError(f"{where}: roles must be some of {', '.join(ROLES)}, got {roles!r}")
    for task_type in types or ():
        if not TASK_TYPE_RE.fullmatch(task_type):
            raise ConfigError(f"{where}: types: {task_type!r} is not a task type")
    if types and "worker" not in roles:
        raise ConfigError(f"{where}: types limit the worker role, which it does not have")


class Credentials:
    """The callers of one tokens file, loaded (and reloaded) whole."""

    def __init__(self, tokens: list[_Token], subjects: dict[str, Caller]) -> None:
        self._tokens = tokens
        self._subjects = subjects

    @classmethod
    def empty(cls) -> Credentials:
        return cls([], {})

    @classmethod
    def load(cls, path: str) -> Credentials:
        """Read and check the file; ConfigError names the entry at fault."""
        where = f"auth.tokens_file {path}"
        try:
            data = tomllib.loads(Path(path).read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
        unknown = set(data) - {"token", "certificate"}
        if unknown:
            raise ConfigError(f"{where}: unknown section {sorted(unknown)[0]!r}")
        tokens: list[_Token] = []
        names: set[str] = set()
        for i, entry in enumerate(_tables(data.get("token", []), f"{where}: token")):
            at = f"{where}: token[{i}]"
            caller = _caller(entry, "name", at, "token", extra={"sha256"})
            digest = entry.get("sha256")
            if not isinstance(digest, str) or not HASH_RE.fullmatch(digest):
                raise ConfigError(f"{at}: sha256 must be 64 lowercase hex digits")
            if caller.name in names:
                raise ConfigError(f"{at}: name {caller.name!r} is used twice")
            names.add(caller.name)
            tokens.append(_Token(bytes.fromhex(digest), caller))
        subjects: dict[str, Caller] = {}
        for i, entry in enumerate(_tables(data.get("certificate", []), f"{where}: certificate")):
            at = f"{where}: certificate[{i}]"
            caller = _caller(entry, "subject", at, "certificate")
            if caller.name in subjects:
                raise ConfigError(f"{at}: subject {caller.name!r} is listed twice")
            subjects[caller.name] = caller
        return cls(tokens, subjects)

    def by_token(self, token: str) -> Caller | None:
        """The caller of a clear token, or None; compares with every entry."""
        return self.by_digest(hashlib.sha256(token.encode("utf-8")).digest())

    def by_digest(self, digest: bytes) -> Caller | None:
        """The caller of a token's SHA-256 (a dashboard session keeps only that)."""
        found = None
        for entry in self._tokens:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.caller
        return found

    def by_subject(self, names: Iterable[str]) -> Caller | None:
        """The certificate entry for the first of a client certificate's names listed."""
        for name in names:
            if name in self._subjects:
                return self._subjects[name]
        return None

    def __len__(self) -> int:
        return len(self._tokens) + len(self._subjects)


def _tables(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: must be a list of tables ([[...]])")
    return value


def _caller(entry: dict[str, Any], key: str, where: str, via: str,
            extra: set[str] | None = None) -> Caller:  # fmt: skip
    unknown = set(entry) - {key, "roles", "types", *(extra or ())}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    name, roles, types = entry.get(key), entry.get("roles"), entry.get("types")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: {key} must be a string")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ConfigError(f"{where}: roles must be a list of strings")
    if types is not None and (
        not isinstance(types, list) or not all(isinstance(t, str) for t in types)
    ):
        raise ConfigError(f"{where}: types must be a list of strings")
    if via == "token":
        check_entry(name, roles, types, where)
    else:  # a certificate subject is a DNS name, an email, a URI...: printable, bounded
        if not name or len(name) > 255 or not name.isprintable():
            raise ConfigError(f"{where}: subject must be 1-255 printable characters")
        check_entry("subject", roles, types, where)
    return Caller(name, frozenset(roles), frozenset(types) if types else None, via)

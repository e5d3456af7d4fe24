"""The handler wrapper that decides who may call what (asyncflow.server.interception).

For each call of TaskService (and of reflection, by `[auth] reflection`):

1. authenticate: the `authorization: Bearer <token>` metadata, else the client
   certificate's subject (mutual TLS), looked up in the tokens file;
2. authorise: one of the caller's roles must allow the method
   (asyncflow.server.auth.roles, fail closed);
3. limit: the caller's call rate and open streams (asyncflow.server.auth.limits);
4. audit: a refusal is one rate-limited WARNING (who, what, why); an admin
   action is one INFO line on the `asyncflow.audit` logger with who did it.

The admitted caller is put in asyncflow.server.auth.scope.CALLER for the
per-type worker checks. Health is never guarded (orchestrators probe it). With
`[auth] enabled = false` every caller has every role: the guard then only
names callers (by certificate under mutual TLS) and applies the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from asyncflow.config import AuthConfig
from asyncflow.errors import AsyncflowError, PermissionDenied, Unauthenticated
from asyncflow.logs import ClientErrorLog
from asyncflow.server.auth.limits import Quotas
from asyncflow.server.auth.roles import ADMIN_ACTIONS, ROLES, allows
from asyncflow.server.auth.scope import CALLER
from asyncflow.server.auth.tokens import Caller, Credentials
from asyncflow.server.errors import to_status
from asyncflow.server.interception import Context, HandlerWrapper, wrap_handler
from asyncflow.server.rpc_metrics import code_name
from asyncflow.server.session import loggable

if TYPE_CHECKING:
    from asyncflow.server.interception import Handler

audit_log = logging.getLogger("asyncflow.audit")

BEARER = re.compile(r"Bearer ([A-Za-z0-9._~+/=-]{1,512})", re.IGNORECASE)
STREAMS = frozenset({"WorkTasks"})
"""The methods counted as open streams."""
TARGET_FIELDS = ("task_id", "task_type", "name")
FIRST_MESSAGE_SECONDS = 5.0
"""Request fields an admin action's audit line names (what it acted on)."""


class Guard:
    """Authentication, authorisation and limits for the calls of one server."""

    def __init__(
        self,
        auth: AuthConfig,
        credentials: Credentials,
        quotas: Quotas,
        client_log: ClientErrorLog,
        *,
        task_service: str,
        reflection: frozenset[str],
        mutual_tls: bool = False,
    ) -> None:
        self.auth = auth
        self.mutual_tls = mutual_tls
        """Whether callers may have certificates to name them (only then are they read)."""
        self.credentials = credentials
        self.quotas = quotas
        self._client_log = client_log
        self.task_service = task_service
        self._reflection = reflection

    def reload(self) -> None:
        """Read the tokens file again (SIGHUP); a bad file raises ConfigError and the
        current entries stay."""
        if self.auth.enabled:
            self.credentials = Credentials.load(self.auth.tokens_file)

    def guarded(self, service: str) -> bool:
        """Whether calls of `service` go through the guard (health never does)."""
        if service == self.task_service:
            return True
        if service in self._reflection:
            return self.auth.reflection != "open"
        return service != "grpc.health.v1.Health"

    def admit(self, service: str, method: str, context: Context) -> Caller:
        """The caller, if it may make this call now; else the AsyncflowError to answer."""
        caller = self.identify(context)
        if service != self.task_service and service not in self._reflection:
            raise PermissionDenied(f"{service} is not served to callers")  # fail closed
        if service == self.task_service and not allows(caller.roles, method):
            roles = ", ".join(sorted(caller.roles))
            raise PermissionDenied(f"{caller.name} (roles {roles}) may not call {method}")
        if self.quotas.rate is not None:
            self.quotas.rate.take(limit_key(caller, context))
        return caller

    def identify(self, context: Context) -> Caller:
        names = certificate_names(context) if self.mutual_tls else []
        if not self.auth.enabled:
            if names:
                return Caller(names[0], frozenset(ROLES), via="certificate")
            return Caller("anonymous", frozenset(ROLES), via="anonymous")
        headers = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
        if headers:
            match = BEARER.fullmatch(str(headers[0])) if len(headers) == 1 else None
            if match is None:
                raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
            caller = self.credentials.by_token(match.group(1))
            if caller is None:
                raise Unauthenticated("unknown token (revoked, or from another server?)")
            return caller
        if names:
            caller = self.credentials.by_subject(names)
            if caller is None:
                raise Unauthenticated(f"client certificate {loggable(names[0][:128])!r} is"
                                      " not listed in the tokens file")  # fmt: skip
            return caller
        raise Unauthenticated("no credentials: send 'authorization: Bearer <token>' metadata")

    def refused(self, what: str, peer: str, error: AsyncflowError) -> None:
        """One rate-limited WARNING: what was refused, to whom, why."""
        self._client_log.warning(
            error.reason, f"refused {loggable(what)} from {loggable(peer)}: {error.message}"
        )


class GuardWrapper(HandlerWrapper):
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def wraps(self, service: str) -> bool:
        return self.guard.guarded(service)

    def wrap(self, handler: Handler, path: str, service: str, method: str) -> Handler:
        guard = self.guard
        streaming_requests = handler.request_streaming

        @contextlib.asynccontextmanager
        async def admitted(request: Any, context: Context, streaming: bool) -> AsyncIterator[None]:
            try:
                caller = guard.admit(service, method, context)
                counted = None
                if method in STREAMS and guard.quotas.streams is not None:
                    counted = limit_key(caller, context)
                    guard.quotas.streams.open(counted)
            except AsyncflowError as refused:
                guard.refused(path, str(context.peer()), refused)
                if streaming_requests:
                    await first_message(request)
                await context.abort_with_status(to_status(refused))
                raise AssertionError("unreachable: abort raises") from None
            CALLER.set(caller)  # this call's own task (and the tasks it starts)
            failure: BaseException | None = None
            try:
                yield
            except BaseException as exc:
                failure = exc
                raise
            finally:
                if counted is not None and guard.quotas.streams is not None:
                    guard.quotas.streams.close(counted)
                if method in ADMIN_ACTIONS and service == guard.task_service:
                    audit(caller, method, targets(request), code_name(context, failure))

        return wrap_handler(handler, admitted)


async def first_message(requests: Any) -> None:
    """Wait (a little) for a request stream's first message before refusing it:
    grpc.aio ends a stream aborted before it read anything with INTERNAL ("Internal
    error from Core") now and then, instead of the status it was given."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(anext(aiter(requests), None), FIRST_MESSAGE_SECONDS)


def certificate_names(context: Context) -> list[str]:
    """A verified client certificate's CN, then its SANs (empty without mutual TLS)."""
    auth = context.auth_context()
    names = [*auth.get("x509_common_name", ()), *auth.get("x509_subject_alternative_name", ())]
    return list(dict.fromkeys(n.decode("utf-8", "replace") for n in names))


def limit_key(caller: Caller, context: Context) -> str:
    """Whose limits a call counts against: the caller, or its address if anonymous."""
    if caller.via != "anonymous":
        return f"{caller.via}:{caller.name}"
    peer = str(context.peer())
    return peer.rpartition(":")[0] or peer  # without the client's port


def targets(request: Any) -> dict[str, str]:
    """What a request acts on: its task_id, task_type or name fields that are set."""
    fields = getattr(request, "DESCRIPTOR", None)
    if fields is None:
        return {}
    return {name: str(getattr(request, name)) for name in TARGET_FIELDS
            if name in fields.fields_by_name and getattr(request, name)}  # fmt: skip


def audit(caller: Caller, method: str, acted_on: dict[str, str], outcome: str) -> None:
    """One INFO line for an admin action: who did what to what, and how it ended."""
    shown = {name: loggable(value[:128]) for name, value in acted_on.items() if value}
    audit_log.info(
        "%s by %s (%s): %s%s", method, caller.name, caller.via, outcome,
        "".join(f" {k}={v}" for k, v in shown.items()),
        extra={"identity": caller.name, "method": method, "outcome": outcome,
               **{f"target_{k}": v for k, v in shown.items()}},
    )  # fmt: skip

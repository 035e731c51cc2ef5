"""API keys: off by default; with LOGPIPE_API_KEYS each key is an admin or bound to a customer."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import HTTPException

from logpipe.errors import ConfigError
from logpipe.schema import is_valid_customer_id

T = TypeVar("T")

MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class ApiKey:
    secret: bytes
    customer_id: str | None
    """The one customer this key may see; None for an admin key."""

    def __repr__(self) -> str:  # never print the secret
        return f"ApiKey(customer_id={self.customer_id!r})"

    def may_see(self, customer_id: str | None) -> bool:
        """Whether this key may see `customer_id` (None: all customers, admin keys only)."""
        return self.customer_id is None or self.customer_id == customer_id


ADMIN = ApiKey(b"", None)
"""Who a request is when access control is off."""


def parse_api_keys(text: str) -> list[ApiKey]:
    """`key=*` (admin) or `key=customer_id`, comma-separated."""
    keys = []
    for number, entry in enumerate(filter(None, (e.strip() for e in text.split(","))), 1):
        secret, _, scope = entry.rpartition("=")
        if len(secret) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"api_keys entry {number}: a key needs at least {MIN_KEY_LENGTH} characters"
                ' and the form "key=*" or "key=customer_id"'
            )
        if scope != "*" and not is_valid_customer_id(scope):
            raise ConfigError(f"api_keys entry {number}: {scope[:40]!r} is not a customer id or *")
        keys.append(ApiKey(secret.encode(), None if scope == "*" else scope))
    if not keys:
        raise ConfigError("api_keys is set but names no key")
    return keys


def bearer_secret(authorization: str) -> str | None:
    """The key in an `Authorization: Bearer <key>` header; None when it has none."""
    scheme, _, presented = authorization.partition(" ")
    presented = presented.strip()
    return presented if scheme.lower() == "bearer" and presented else None


def find_key(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The key matching `presented`, comparing with every key in constant time so the answer
    time does not tell how much of a guess was right."""
    candidate = presented.encode()
    found = None
    for key in keys:
        if hmac.compare_digest(key.secret, candidate):
            found = key
    return found


class PerCaller:
    """At most `limit` computations (answers a request waits for) in flight per caller (an
    API key): one key cannot hold every query slot of a worker while others wait. A caller
    over the limit waits up to `patience` seconds for one of its own to finish, then gets a
    429. Holds an entry only per caller with something in flight or waiting."""

    def __init__(self, limit: int, *, patience: float) -> None:
        self._limit = limit
        self._patience = patience
        self._held: dict[Hashable, tuple[asyncio.Semaphore, list[int]]] = {}

    async def run(self, caller: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """`work()`, once the caller has fewer than `limit` others in flight."""
        slots, users = self._held.setdefault(caller, (asyncio.Semaphore(self._limit), [0]))
        users[0] += 1
        try:
            try:
                await asyncio.wait_for(slots.acquire(), self._patience)
            except asyncio.TimeoutError:
                raise HTTPException(
                    429,
                    f"this caller already has {self._limit} uncached queries running;"
                    " try again shortly",
                    {"Retry-After": "1"},
                ) from None
            try:
                return await work()
            finally:
                slots.release()
        finally:
            users[0] -= 1
            if not users[0]:
                del self._held[caller]

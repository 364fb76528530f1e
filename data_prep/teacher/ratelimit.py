"""An asyncio token bucket for ``--max-requests-per-minute``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up; :meth:`acquire` waits for one token.

    The clock and the sleep are injectable so the refill arithmetic is testable without waiting.
    """

    def __init__(
        self,
        rate: float,
        capacity: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._last = clock()
        self._lock = asyncio.Lock()

    @classmethod
    def per_minute(cls, requests_per_minute: float, **kwargs: object) -> TokenBucket:
        """A bucket for ``requests_per_minute`` that allows a burst of at most one second's worth."""
        rate = requests_per_minute / 60.0
        return cls(rate, capacity=max(1.0, rate), **kwargs)  # type: ignore[arg-type]

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self) -> None:
        async with self._lock:  # FIFO-ish: one waiter refills at a time
            self._refill()
            while self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1.0

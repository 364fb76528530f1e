"""The chat endpoint: one OpenAI-compatible client with bounded concurrency, rate limiting and retries.

Uses the ``openai`` library (``AsyncOpenAI`` with ``base_url``, its own retries off) so any OpenAI-compatible
server works: OpenAI, vLLM, SGLang, a local server. Retries with exponential backoff and jitter cover 429
(honouring ``Retry-After``/``retry-after-ms``), 5xx, 408/409, timeouts, dropped connections, bodies that are
not valid JSON (a truncated response) and answers the caller's validator rejects (no ranking in them).
The API key is only ever handed to the client object; :class:`Redactor` scrubs it from every error message
this module produces, because some servers quote it back.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data_prep.teacher.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429}


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Completion:
        return cls(str(d["text"]), d.get("finish_reason"), int(d.get("prompt_tokens", 0)),
                   int(d.get("completion_tokens", 0)))


class RequestFailed(Exception):
    """A request that failed for good: a non-retryable status, or retries exhausted."""

    def __init__(self, reason: str, message: str, attempts: int) -> None:
        super().__init__(f"{reason}: {message} (after {attempts} attempt(s))")
        self.reason = reason
        self.message = message
        self.attempts = attempts


class Redactor:
    """Replaces secret values in text; secrets shorter than 6 characters are not redacted (too common)."""

    def __init__(self, *secrets: str | None) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text


@dataclass
class RetryPolicy:
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): the server's Retry-After when it
        gave one, else exponential backoff with equal jitter (half fixed, half random)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        d = min(self.backoff_max, self.backoff_base * (2**attempt))
        return d / 2 + rng.uniform(0, d / 2)


@dataclass
class ClientStats:
    requests_sent: int = 0
    responses_ok: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def requests_per_second(self) -> float:
        return self.requests_sent / max(1e-9, time.monotonic() - self.started)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None when absent."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class Rejection:
    """Why a validator refused a completion, and whether asking again may help."""

    reason: str
    message: str
    retryable: bool = True


Validator = Callable[[Completion], "Rejection | None"]


class ChatClient:
    """Sends chat completions with a concurrency bound, a request-rate bucket and retries."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float = 120.0,
        concurrency: int = 8,
        requests_per_minute: float | None = None,
        max_tokens: int | None = None,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        import openai

        self.model = model
        self.max_tokens = max_tokens
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self.redact = Redactor(api_key)
        # Local servers (vLLM, SGLang) accept any key; the openai client insists on a non-empty one.
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "no-key",
                                          max_retries=0, timeout=timeout)
        self._semaphore = asyncio.Semaphore(max(1, concurrency))
        self._bucket = TokenBucket.per_minute(requests_per_minute) if requests_per_minute else None
        self._rng = random.Random(seed)

    async def aclose(self) -> None:
        await self._client.close()

    async def _send(self, messages: list[dict[str, str]], temperature: float) -> Completion:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature}
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        async with self._semaphore:
            if self._bucket is not None:
                await self._bucket.acquire()
            self.stats.requests_sent += 1
            raw = await self._client.chat.completions.with_raw_response.create(**kwargs)
            resp = raw.parse()  # a body cut short raises json.JSONDecodeError here
        if not getattr(resp, "choices", None):
            raise _BadResponse("empty_response", "the response has no choices")
        usage = getattr(resp, "usage", None)
        choice = resp.choices[0]
        text = choice.message.content if choice.message is not None else None
        completion = Completion(
            text=text or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        if not completion.text.strip():
            raise _BadResponse("empty_response", "the response has no text")
        return completion

    def _classify(self, err: Exception) -> tuple[str, bool, float | None, str]:
        """(reason, retryable, retry-after seconds, redacted message) for an exception from _send."""
        import openai

        if isinstance(err, _BadResponse):
            return err.reason, True, None, err.message
        if isinstance(err, json.JSONDecodeError):
            return "truncated_json", True, None, f"response body is not valid JSON ({err.msg})"
        if isinstance(err, openai.APITimeoutError):
            return "timeout", True, None, "request timed out"
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            retry_after = parse_retry_after(err.response.headers if err.response is not None else None)
            reason = "rate_limited" if status == 429 else f"http_{status}"
            return reason, status >= 500 or status in RETRYABLE_STATUS, retry_after, self.redact(str(err))
        if isinstance(err, openai.APIConnectionError):
            return "connection", True, None, self.redact(str(err)) or "connection failed"
        raise err

    async def complete(self, messages: list[dict[str, str]], *, temperature: float = 0.0,
                       validate: Validator | None = None) -> tuple[Completion, int]:
        """A completion that passed ``validate`` (which returns a :class:`Rejection` or None), and the
        number of attempts it took. Raises :class:`RequestFailed` when it cannot get one."""
        attempt = 0
        while True:
            try:
                completion = await self._send(messages, temperature)
                bad = validate(completion) if validate is not None else None
                if bad is None:
                    self.stats.responses_ok += 1
                    return completion, attempt + 1
                reason, retryable, retry_after, message = bad.reason, bad.retryable, None, bad.message
            except Exception as err:  # classified below; anything unknown is re-raised by _classify
                reason, retryable, retry_after, message = self._classify(err)
            if not retryable or attempt >= self.retry.max_retries:
                self.stats.failures[reason] += 1
                raise RequestFailed(reason, message, attempt + 1)
            wait = self.retry.delay(attempt, retry_after, self._rng)
            self.stats.retries[reason] += 1
            logger.info("retrying after %s (attempt %d, waiting %.2fs)", reason, attempt + 1, wait)
            attempt += 1
            await asyncio.sleep(wait)


class _BadResponse(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

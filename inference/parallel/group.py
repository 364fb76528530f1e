"""The ranks of one reranking job, coordinated through the launcher's c10d key-value store.

Why a store and not collectives: ranks finish at different times (queries differ in length) and a rank may
fail on its own, so every wait here polls keys, checks a job-wide failure flag and watches the other ranks'
heartbeats. Nothing can hang at a barrier: a failed rank sets the flag with its message, rank 0 prints it
and every rank stops; a rank that vanished without a word (its heartbeat stops) is reported by rank 0 after
``stale_s``. torchrun, accelerate and ``srun --kill-on-bad-exit`` also stop the job when a rank dies.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

ABORT = "abort"
ACK = "abort_seen"


def launched_world_size() -> int:
    """Processes in this job as the launcher tells them (``WORLD_SIZE``; 1 outside a launcher)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank ``rank``'s share: every ``world_size``-th item from ``rank`` (static interleaving).

    Interleaving spreads long and short queries evenly when the input has no length order, needs no
    coordination and makes each rank's share reproducible; ranks differ by at most one query.
    """
    return list(items[rank::world_size])


class PeerFailed(Exception):
    """Another rank (or this job as a whole) failed; ``info`` holds rank, host, message and exit code."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(info.get("message", "a rank failed"))
        self.info = info


class StoreLost(PeerFailed):
    """The launcher's store went away (the torchrun agent was killed, rank 0's host died): no rank can learn
    anything from the others any more, so each stops on its own with one line (no failure flag to set)."""


class _GuardedStore:
    """The store, with a lost connection as :class:`StoreLost` (once lost, every call fails at once instead of
    trying the dead socket again: torch logs a C++ stack for each try)."""

    def __init__(self, store: Any, rank: int) -> None:
        self._store = store
        self._rank = rank
        self.lost: str | None = None

    def _call(self, name: str, *args: Any) -> Any:
        if self.lost is not None:
            raise StoreLost(self._info(self.lost))
        try:
            return getattr(self._store, name)(*args)
        except RuntimeError as err:  # torch.distributed.DistNetworkError / DistStoreError
            self.lost = " ".join(str(err).split())[:200]
            raise StoreLost(self._info(self.lost)) from None

    def _info(self, why: str) -> dict[str, Any]:
        return {"rank": self._rank, "host": socket.gethostname(), "pid": os.getpid(), "code": 1,
                "message": f"rank {self._rank} lost contact with the launcher's store ({why}): was torchrun / "
                           "the launcher stopped?"}

    def set(self, *args: Any) -> Any:
        return self._call("set", *args)

    def get(self, *args: Any) -> Any:
        return self._call("get", *args)

    def add(self, *args: Any) -> Any:
        return self._call("add", *args)

    def check(self, *args: Any) -> Any:
        return self._call("check", *args)


class Group:
    """One job's ranks: ``rank``, ``world_size``, JSON values in the shared store, a failure flag, heartbeats.

    ``store`` is any c10d ``Store`` shared by all ranks (the launcher's TCPStore; a ``HashStore`` in tests).
    A daemon thread beats every ``beat_s`` seconds; on rank 0 it also watches the failure flag and calls
    ``on_failure`` once, so a failure is reported even while rank 0 is busy loading a model.
    """

    def __init__(self, store: Any, rank: int, world_size: int, *, beat_s: float = 2.0, stale_s: float = 120.0,
                 poll_s: float = 0.2, on_failure: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.store = _GuardedStore(store, rank)
        self.rank = rank
        self.world_size = world_size
        self.beat_s = beat_s
        self.stale_s = stale_s
        self.poll_s = poll_s
        self.on_failure = on_failure
        self.host = socket.gethostname()
        self._reported = threading.Event()
        self._report_lock = threading.Lock()
        self._stop = threading.Event()
        self._beats: dict[int, tuple[int, float]] = {}
        self.store.add(f"hb/{rank}", 1)
        self._thread = threading.Thread(target=self._beat, name=f"dear-rerank-heartbeat-{rank}", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, *, timeout_s: float = 1800.0, **kwargs: Any) -> Group:
        """Join the launcher's store (``env://``: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)."""
        # torch's C++ side logs a warning with a C++ stack trace for every call on a store whose server went
        # away (the launcher was killed): one line per rank says it instead (StoreLost)
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
        import torch.distributed as dist

        store, rank, world_size = next(dist.rendezvous("env://", timeout=timedelta(seconds=timeout_s)))
        # torchrun's agent store outlives restarts and serves other keys: keep ours apart
        prefix = (f"dear_rerank/{os.environ.get('TORCHELASTIC_RUN_ID', 'job')}/"
                  f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/")
        return cls(dist.PrefixStore(prefix, store), rank, world_size, **kwargs)

    # -- values ----------------------------------------------------------------------------------------
    def publish(self, key: str, value: Any) -> None:
        self.store.set(key, json.dumps(value))

    def has(self, key: str) -> bool:
        return bool(self.store.check([key]))

    def read(self, key: str) -> Any:
        return json.loads(self.store.get(key))

    def wait(self, keys: dict[str, int]) -> list[Any]:
        """The values of ``keys`` (each mapped to the rank that sets it) once all are set; raises
        :class:`PeerFailed` when the job fails meanwhile or a rank that still owes a key stops beating for
        ``stale_s``."""
        missing = dict(keys)
        last_alive_check = time.monotonic()
        while missing:
            self.check()
            if self.store.check(list(missing)):  # one round trip when all are there
                break
            missing = {k: r for k, r in missing.items() if not self.has(k)}
            if missing and time.monotonic() - last_alive_check >= self.beat_s:
                self._check_alive(sorted(set(missing.values())))
                last_alive_check = time.monotonic()
            time.sleep(self.poll_s)
        return [self.read(k) for k in keys]

    # -- failure -----------------------------------------------------------------------------------------
    def fail(self, message: str, *, code: int = 1) -> dict[str, Any]:
        """Set the job-wide failure flag (first failure wins) and return the failure that stands."""
        info = {"rank": self.rank, "host": self.host, "pid": os.getpid(), "message": message, "code": code}
        if self.store.add("abort_count", 1) == 1:
            self.publish(ABORT, info)
            return info
        return self._wait_abort_info(default=info)

    def failure(self) -> dict[str, Any] | None:
        if not self.has(ABORT):
            return None
        return self.read(ABORT)

    def check(self) -> None:
        """Raise :class:`PeerFailed` when any rank has failed (called between queries)."""
        info = self.failure()
        if info is not None:
            self.report(info)
            raise PeerFailed(info)

    def report(self, info: dict[str, Any]) -> None:
        """On rank 0: hand the failure to ``on_failure`` (once) and acknowledge it, so the other ranks may exit."""
        if self.rank != 0:
            return
        with self._report_lock:
            if self._reported.is_set():
                return
            if self.on_failure is not None:
                self.on_failure(info)
            self._reported.set()
            self.publish(ACK, True)

    def wait_reported(self, timeout_s: float | None = None) -> bool:
        """Other ranks: wait until rank 0 has reported the failure (it may be busy; it is watched by its
        heartbeat thread), so the launcher does not stop rank 0 before it printed the message."""
        start = time.monotonic()
        try:
            while not self.has(ACK):
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    return False
                self._check_alive([0])
                time.sleep(self.poll_s)
        except (PeerFailed, RuntimeError):  # rank 0 stopped, or the store went away with it
            return False
        return True

    # -- liveness ----------------------------------------------------------------------------------------
    def _beat(self) -> None:
        while not self._stop.wait(self.beat_s):
            try:
                self.store.add(f"hb/{self.rank}", 1)
                if self.rank == 0 and not self._reported.is_set():
                    info = self.failure()
                    if info is not None:
                        self.report(info)
            except Exception as err:  # the store went away with its host (rank 0 or the agent): stop beating
                logger.debug("heartbeat stopped: %s", err)
                return

    def _check_alive(self, ranks: Sequence[int]) -> None:
        now = time.monotonic()
        for r in ranks:
            if r == self.rank:
                continue
            count = self.store.add(f"hb/{r}", 0)
            last = self._beats.get(r)
            if last is None or last[0] != count:
                self._beats[r] = (count, now)
            elif now - last[1] > self.stale_s:
                info = {"rank": r, "host": "?", "pid": None, "code": 1,
                        "message": f"rank {r} stopped responding (no heartbeat for {self.stale_s:.0f} s)"}
                self.report(info)
                raise PeerFailed(info)

    def _wait_abort_info(self, default: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        """The first failure's details (its rank sets them right after winning the count)."""
        deadline = time.monotonic() + timeout_s
        while not self.has(ABORT):
            if time.monotonic() > deadline:  # the first failer died in between: ours stands instead
                self.publish(ABORT, default)
                return default
            time.sleep(self.poll_s)
        return self.read(ABORT)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.beat_s + 1)


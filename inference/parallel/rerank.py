"""`dear rerank` over many processes: split by query, one part file per rank, rank 0 merges.

    torchrun --nproc_per_node 8 -m inference.rerank --model ADAPTER --input dl19.json --out dl19.trec
    accelerate launch --num_processes 8 -m inference.rerank ...     (the same options as `dear rerank`)

Rank 0 takes the one-writer lock on ``--out``, folds what earlier jobs left (the run and any part files, from
any number of processes) into the run and publishes the finished qids. Every rank takes its share of the
queries not yet done (:func:`inference.parallel.group.shard`), loads the model on its own device and appends
each finished query to its part (``RUN.part-R``, flushed per query). When all ranks have reported, rank 0
merges the parts into the run and JSONL in input order, which is byte-identical to a one-process run for
greedy decoding, and writes the summary with every rank's totals and wall time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from typing import Any

from data_prep.schema import DataError
from inference.parallel.group import Group, PeerFailed, StoreLost, shard

logger = logging.getLogger(__name__)


def rank_device(device: str, local_rank: int) -> str:
    """The device of the process with ``local_rank``: its own GPU (``auto``/``cuda``), else what was asked."""
    if device not in ("auto", "cuda"):
        return device
    import torch

    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise DataError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)",
                            reason="too_many_processes",
                            fix="start at most one process per GPU (--nproc_per_node / --num_processes)")
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    if device == "cuda":
        raise DataError("--device cuda but no GPU is visible", reason="no_gpu", fix="use --device cpu")
    return "cpu"


def _isolate_for_vllm(local_rank: int) -> None:
    """vLLM starts its own engine (and its own torch.distributed world) per process: show it one GPU and
    none of the launcher's rank variables, so each rank runs an independent engine on its own GPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",") if visible else [str(i) for i in range(64)]
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[local_rank] if local_rank < len(gpus) else str(local_rank)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE"):
        os.environ.pop(var, None)


def _print_failure(info: dict[str, Any]) -> None:
    where = f" (rank {info['rank']} on {info.get('host', '?')})" if info.get("rank") not in (None, 0) else ""
    print(f"dear rerank: error: {info['message']}{where}", file=sys.stderr, flush=True)


def _print_lost(info: dict[str, Any], out: str) -> None:
    print(f"dear rerank: error: {info['message']} -- finished queries are saved in {out} and its part files; "
          "run the same command again to resume", file=sys.stderr, flush=True)


def _record_for_launcher(message: str, code: int) -> None:
    """Hand this process's one-line error to torchrun (``TORCHELASTIC_ERROR_FILE``), whose failure report
    then shows it as the root cause instead of a link; torchrun itself still prints its own
    ``ChildFailedError`` traceback and exits 1 (documented in docs/errors.md)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    import json

    try:
        with open(path, "w", encoding="utf-8") as f:
            line = f"dear rerank: error: {message}"  # torchrun's record_exception format, our line as the trace
            json.dump({"message": {"message": line, "errorCode": code,
                                   "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}}, f)
    except OSError as err:  # the report is a courtesy: never fail on it
        logger.debug("cannot write %s: %s", path, err)


def run_distributed(args: argparse.Namespace, group: Group | None = None) -> int:
    """The many-process `dear rerank`; returns the process's exit code (rank 0 prints the outcome)."""
    from inference.rerank_job import RerankOptions

    if not isinstance(args, RerankOptions):  # parsed by `dear rerank`'s parser: the same fields
        args = RerankOptions(**vars(args))
    own = group is None
    if group is None:
        group = Group.from_env(on_failure=_print_failure)
    elif group.rank == 0 and group.on_failure is None:
        group.on_failure = _print_failure
    lock = None
    try:
        try:
            requests = None
            if group.rank == 0:
                lock, plan, requests = _prepare(args, group)
            else:
                (plan,) = group.wait({"ready": 0})
                _check_shared_output(args.out, plan, group)
            stats = _work(args, group, plan, requests)
            group.publish(f"status/{group.rank}", stats)
            if group.rank != 0:
                return 0
            statuses = group.wait({f"status/{r}": r for r in range(group.world_size)})
            _finish(args, plan, statuses, requests)
            return 0
        except StoreLost as lost:  # nobody to tell: each process says it once, for itself
            _print_lost(lost.info, args.out)
            return 1
        except PeerFailed as failed:
            code = int(failed.info.get("code") or 1)
            if group.rank != 0:
                group.wait_reported(timeout_s=600)
            else:  # torchrun names rank 0 first among the failed: give it the message that stands
                _record_for_launcher(str(failed.info.get("message")), code)
            return code
        except (Exception, KeyboardInterrupt) as err:
            code = 2 if isinstance(err, DataError) else 130 if isinstance(err, KeyboardInterrupt) else 1
            if isinstance(err, DataError):
                from inference.rerank_job import error_line

                message = error_line(err).removeprefix("dear rerank: error: ")  # flags, as dear rerank says
            elif isinstance(err, KeyboardInterrupt):
                message = (f"interrupted; finished queries are saved in {args.out} and its part files. "
                           "Run the same command again to resume.")
            else:
                logger.exception("rank %d failed", group.rank)
                message = f"{type(err).__name__}: {err}"
            try:
                info = group.fail(message, code=code)
                if group.rank == 0:
                    group.report(info)
                else:
                    group.wait_reported(timeout_s=600)
            except StoreLost as lost:  # the launcher went away as well: report this rank's own failure
                _print_failure({"message": message, "rank": group.rank, "host": group.host})
                _print_lost(lost.info, args.out)
            _record_for_launcher(message, code)
            return code
    finally:
        if lock is not None:
            lock.release()
        if own:
            group.close()


def _prepare(args: argparse.Namespace, group: Group) -> tuple[Any, dict[str, Any], list[Any]]:
    """Rank 0: validate the input, lock ``--out``, fold in what earlier jobs left, publish the plan."""
    from data_prep.cli_options import checked
    from data_prep.io import OutputLock
    from inference.rerank_job import check_inputs, rerank_settings
    from inference.runfiles import expected_lines, prepare_resume, query_fingerprints

    t0 = time.perf_counter()
    checked(args, prog="dear rerank")  # options that can never work, as `dear rerank` refuses them
    requests, _ = check_inputs(args)  # input, qrels, metrics, model folder: before --out is touched
    lock = OutputLock(args.out, what="run").acquire()
    try:  # the same resume rules as one process: finished queries kept, changed ones redone, JSONL owned
        expected = expected_lines(requests)
        done = prepare_resume(args.out, args.jsonl, expected, rerank_settings(args), overwrite=args.overwrite,
                              fingerprints=query_fingerprints(requests))
    except BaseException:
        lock.release()
        raise
    plan = {"done": [q for q in expected if q in done], "start": time.time(), "prepare_s": time.perf_counter() - t0,
            "owner": {"pid": os.getpid(), "host": group.host}}
    group.publish("ready", plan)
    return lock, plan, requests


def _check_shared_output(out: str, plan: dict[str, Any], group: Group, *, wait_s: float = 30.0) -> None:
    """Every rank must see the files rank 0 sees (its lock on ``--out``), or the merge would miss its part.
    A network file system may show the new lock file late, so look again for ``wait_s`` before giving up."""
    import json

    from data_prep.io.lock import lock_path

    want = plan["owner"]
    deadline = time.monotonic() + wait_s
    while True:
        try:
            owner = json.loads(lock_path(out).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            owner = None
        if owner and owner.get("pid") == want["pid"] and owner.get("host") == want["host"]:
            return
        if time.monotonic() > deadline:
            raise DataError(f"rank {group.rank} on {group.host} does not see the lock rank 0 holds on --out "
                            f"({want['host']}, pid {want['pid']})", path=out, reason="output_not_shared",
                            fix="put --out on a file system every node mounts at the same path")
        group.check()
        time.sleep(0.5)


def _work(args: argparse.Namespace, group: Group, plan: dict[str, Any], requests: list[Any] | None
          ) -> dict[str, Any]:
    """This rank's share: rerank it into its part file; returns its totals."""
    from data_prep.io import OutputLock
    from inference.ranking.options import device_map_for
    from inference.rerank_job import load_listwise, load_requests, rerank_queries
    from inference.runfiles import RunAppender, part_paths

    t0 = time.perf_counter()
    if group.rank != 0:  # one set of progress bars (model loading included) is enough
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    local_rank = int(os.environ.get("LOCAL_RANK", group.rank))
    if requests is None:
        requests = load_requests(args.input, args.corpus, args.topics, args.limit)
    done = set(plan["done"])
    todo = [r for r in requests if r.qid not in done]
    mine = shard(todo, group.rank, group.world_size)
    stats: dict[str, Any] = {"rank": group.rank, "host": group.host, "queries": len(mine), "ranked": 0,
                             "windows": 0, "model_calls": 0, "generated_tokens": 0, "prompt_tokens": 0,
                             "sequential_rounds": 0, "strategy": args.strategy, "repairs": {},
                             "wall_s": 0.0, "cpu_s": 0.0, "load_s": 0.0, "device": None}
    if not mine:
        stats["total_s"] = round(time.perf_counter() - t0, 3)
        return stats
    if args.backend == "vllm":
        _isolate_for_vllm(local_rank)
        local_rank = 0  # the one GPU left visible (for a two-stage pointwise model on the same GPU)
    device = rank_device(args.device, local_rank)
    device_map = device_map_for(device)
    stats["device"] = device
    run_part, rec_part = part_paths(args.out, group.rank)
    with OutputLock(run_part, what="run part"), RunAppender(run_part, rec_part if args.jsonl else None,
                                                            tag=args.tag) as writer:
        group.check()
        if args.pointwise:
            from inference.two_stage import run_pointwise_stage

            mine, stage1 = run_pointwise_stage(args, mine, set(), device_map)
            stats["pointwise_s"] = round(stage1.seconds, 3)
            stats["pairs"] = stage1.pairs
            group.check()
        t_load = time.perf_counter()
        reranker = load_listwise(args, device_map)
        stats["load_s"] = round(time.perf_counter() - t_load, 3)
        group.check()
        show = not args.no_progress and group.rank == 0
        run = rerank_queries(reranker, mine, writer, progress=show,
                             desc=f"rerank (rank 0 of {group.world_size})", between=group.check)
    stats.update(run)
    stats["wall_s"] = round(stats["wall_s"], 3)
    stats["backend"] = reranker.backend.stats.as_dict()
    stats["total_s"] = round(time.perf_counter() - t0, 3)
    return stats


def _finish(args: argparse.Namespace, plan: dict[str, Any], statuses: list[dict[str, Any]], requests: list[Any]
            ) -> None:
    """Rank 0: merge the parts into the run and JSONL in input order, then the summary over all ranks."""
    from data_prep.io import package_versions
    from data_prep.readers import read_qrels
    from inference.rerank_job import add_metrics, show_summary, write_summary
    from inference.runfiles import consolidate, expected_lines

    expected = expected_lines(requests)
    t0 = time.perf_counter()
    done = consolidate(args.out, args.jsonl, expected)
    merge_s = time.perf_counter() - t0
    missing = [q for q in expected if q not in done]
    if missing:  # a rank reported success without writing all its queries: never hide that
        raise DataError(f"{len(missing)} queries missing after the merge: {missing[:5]}", path=args.out,
                        reason="merge_incomplete", fix="run the same command again to rank them")
    summary = merge_summary(statuses, queries=len(requests), resumed=len(plan["done"]))
    summary["strategy"] = args.strategy
    summary["merge_s"] = round(merge_s, 3)
    summary["job_wall_s"] = round(time.time() - plan["start"], 3)
    summary["versions"] = package_versions()
    add_metrics(summary, args, requests, read_qrels(args.qrels) if args.qrels else None)
    write_summary(summary, args.out)
    show_summary(summary, args.out)


def merge_summary(statuses: list[dict[str, Any]], *, queries: int, resumed: int) -> dict[str, Any]:
    """One summary from every rank's totals: sums, merged repairs, per-rank times and the load imbalance.

    ``wall_s`` is the slowest rank's reranking time (what the job waited for), so ``queries_per_s`` is the
    job's throughput; ``imbalance.max_over_mean`` is that time over the ranks' mean (1.0 = perfect)."""
    repairs: Counter[str] = Counter()
    backend: Counter[str] = Counter()
    for s in statuses:
        repairs.update(s.get("repairs") or {})
        backend.update(s.get("backend") or {})
    ranked = sum(s["ranked"] for s in statuses)
    walls = [s["wall_s"] for s in statuses]
    wall = max(walls) if walls else 0.0
    mean = sum(walls) / len(walls) if walls else 0.0
    summary: dict[str, Any] = {
        "queries": queries, "resumed": resumed, "ranked": ranked,
        "windows": sum(s["windows"] for s in statuses),
        "model_calls": sum(s["model_calls"] for s in statuses),
        "generated_tokens": sum(s["generated_tokens"] for s in statuses),
        "prompt_tokens": sum(s.get("prompt_tokens", 0) for s in statuses),
        "sequential_rounds": sum(s.get("sequential_rounds", 0) for s in statuses),
        "repairs": dict(sorted(repairs.items())),
        "cpu_s": round(sum(s.get("cpu_s", 0.0) for s in statuses), 3),
        "wall_s": round(wall, 3), "queries_per_s": round(ranked / wall, 3) if wall > 0 else None,
        "backend": {k: round(v, 4) if isinstance(v, float) else v for k, v in sorted(backend.items())},
        "world_size": len(statuses),
        "ranks": [{k: s.get(k) for k in ("rank", "host", "device", "queries", "windows", "generated_tokens",
                                         "load_s", "pointwise_s", "wall_s", "cpu_s", "total_s") if k in s}
                  for s in statuses],
        "imbalance": {"queries": [s["queries"] for s in statuses], "wall_s": walls,
                      "max_over_mean": round(wall / mean, 4) if mean > 0 else None,
                      "idle_s": round(sum(wall - w for w in walls), 3)},
    }
    pointwise = [s["pointwise_s"] for s in statuses if "pointwise_s" in s]
    if pointwise:
        from inference.two_stage import StageTimings

        stages = StageTimings(pointwise_s=sum(pointwise), listwise_s=sum(walls),
                              pairs=sum(s.get("pairs", 0) for s in statuses), queries=ranked).as_dict()
        stages["summed_over_ranks"] = True
        summary["stages"] = stages
    return summary

"""`python -m inference.rerank`: `dear rerank` for launchers that start a module on every process.

    accelerate launch --num_processes 8 -m inference.rerank --model ADAPTER --input IN --out RUN.trec
    torchrun --nnodes 2 --nproc_per_node 8 ... -m inference.rerank ...    (see scripts/slurm_rerank.sh)

It takes exactly the `dear rerank` options. In one process it is `dear rerank`; under a launcher with
WORLD_SIZE > 1 the queries are split over the processes (:mod:`inference.parallel.rerank`).
"""

from __future__ import annotations

from inference import cli_rerank
from inference.parallel import launched_world_size
from inference.rerank_job import RerankOptions


def main(argv: list[str] | None = None) -> int:
    if launched_world_size() <= 1:
        return cli_rerank.main(argv)
    from inference.parallel.rerank import run_distributed

    # parsed here, checked on rank 0 (which reports a bad value once, for every process)
    return run_distributed(cli_rerank.parse_options(RerankOptions, argv, prog="dear rerank",
                                                    parser=cli_rerank.build_parser()))


if __name__ == "__main__":
    raise SystemExit(main())

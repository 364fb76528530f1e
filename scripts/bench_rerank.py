"""Benchmark: `ListwiseReranker` against the model card's approach, same model, windows and token budget.

The card's approach (``ListwiseLoRAReranker.rerank`` applied per sliding window): one window per
``model.generate`` call, no batching, a fixed ``max_new_tokens``. It is given the same untruncated prompts
(the card's ``truncation=True, max_length=2048`` would cut the instruction off a 20-passage prompt). Ours:
windows of different queries decoded together, each window prefilled alone (the last layer's attention for the
kept row only), early stop once the ranking is complete. Both read the generations with the same parser, so
greedy rankings must be identical. An ablation row runs ours again with the full prefill (every layer's attention
for every row, as the card's ``generate`` does): the last-row trim saves one layer's share of prefill attention,
half of it on the 2-layer tiny model but 1/32 on an 8B model, so that row is the fair guide to larger models.
First-token rows (``ListwiseReranker(scoring="first-token")``, FIRST) rank each of the same windows with one
forward pass of the same prompt plus the answer start, ids by their first-id logit: no decoding at all. They run
in the same chunks as the others, at each of ``--first-token-batch-sizes`` (windows of different queries per
forward; 1 is what `dear rerank` does on a CPU), and are compared with the card approach and with ours
(generation).

    python scripts/bench_rerank.py                      # tiny random Llama on CPU, DL19 BM25 top-100
    python scripts/bench_rerank.py --layers 8           # the same with 8 layers (what `dear tiny-model --layers 8` builds)
    python scripts/bench_rerank.py --random-8b --device cuda --queries 10 --budgets 50 100 --threads 8
        # an 8B-shaped random bf16 Llama on a GPU (about 16 GB; decode dominates there)
    python scripts/bench_rerank.py --dry-run      # that path at a tiny shape on the CPU, in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=str(REPO.parent / "shared/data/trec-dl19/retrieve_results_dl19_top100.json"))
    p.add_argument("--model", help="model folder (default: build the tiny random Llama)")
    p.add_argument("--layers", type=int, default=2, help="layers of the tiny random Llama built when --model is not given")
    p.add_argument("--random-8b", action="store_true",
                   help="a random Llama-3.1-8B-shaped model in bf16 (needs a GPU), tiny tokenizer")
    p.add_argument("--dry-run", action="store_true",
                   help="with --random-8b: the same code path at a tiny width and depth on the CPU (2 queries, "
                        "4 tokens), to check the script before spending GPU time")
    p.add_argument("--device", default="cpu")
    p.add_argument("--queries", type=int, default=None, help="first N queries (default: all)")
    p.add_argument("--budgets", type=int, nargs="+", default=[50, 100])
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--stride", type=int, default=10)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-interleave", dest="interleave", action="store_false",
                   help="run each approach over all queries in one go (default: alternate per batch of queries)")
    p.add_argument("--no-card", dest="card", action="store_false",
                   help="skip the card approach (on a GPU its 1-window-per-generate loop takes minutes)")
    p.add_argument("--no-ablation", dest="ablation", action="store_false",
                   help="skip the extra run of ours with a full prefill (the last-row prefill trim off)")
    p.add_argument("--first-token-batch-sizes", type=int, nargs="*", default=None,
                   help="first-token rows at these batch sizes (default: 1 and --batch-size); none to skip them")
    p.add_argument("--json", help="write the figures here")
    return p.parse_args(argv)


def load_model(args: argparse.Namespace):
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from dear_train.tiny_model import build_tiny_model

    tiny_dir = Path(args.model) if args.model else build_tiny_model(Path(tempfile.mkdtemp()) / "tiny",
                                                                    num_hidden_layers=args.layers)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    if not args.random_8b:
        model = AutoModelForCausalLM.from_pretrained(tiny_dir).to(args.device)
        layers = model.config.num_hidden_layers
        return model.eval(), tok, (f"tiny random Llama ({sum(p.numel() for p in model.parameters())} parameters, "
                                   f"{layers} layers)")
    shape = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8)
    if args.dry_run:
        shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=1)
    cfg = LlamaConfig(vocab_size=128256, **shape, max_position_embeddings=131072,
                      rope_theta=500000.0, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
                      eos_token_id=[tok.convert_tokens_to_ids("<|eot_id|>")])
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # build the 16 GB of weights directly in bf16 on the device
    try:
        with torch.device(args.device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id,
                                               bos_token_id=cfg.bos_token_id, do_sample=False)
    what = "random Llama-3.1-8B-shaped model, bf16"
    return model.eval(), tok, (what + " (dry run: tiny width and depth)" if args.dry_run else what)


class _FirstTokenClock:
    """A generate() streamer that notes when the first new token arrives (the end of prefill)."""

    def __init__(self, sync) -> None:
        self.calls = 0
        self.first = None
        self.sync = sync

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:  # the first call carries the prompt
            self.sync()
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def card_approach(model, tok, spec, requests, *, window, stride, top_k, budget, sync):
    """The model card's loop, per window: untruncated prompt, one generate call, fixed budget."""
    import torch

    from data_prep.prompts import render_prompt
    from data_prep.ranking import parse_ranking
    from data_prep.windows import apply_window, window_plan

    stats = {"prefill_s": 0.0, "decode_s": 0.0, "windows": 0, "generated_tokens": 0}
    rankings, raws = {}, []
    device = model.get_input_embeddings().weight.device
    for req in requests:
        cands = req.candidates
        order = list(range(len(cands)))
        for start, end in window_plan(min(top_k, len(cands)), window, stride):
            idx = order[start:end]
            prompt = render_prompt(spec, req.query, [cands[i].passage() for i in idx]).text
            inputs = tok(prompt, return_tensors="pt")
            inputs = {k: v.to(device) for k, v in inputs.items()}
            clock = _FirstTokenClock(sync)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=budget, do_sample=False,
                                     pad_token_id=tok.pad_token_id, streamer=clock)
            sync()
            t1 = time.perf_counter()
            first = clock.first or t1
            stats["prefill_s"] += first - t0
            stats["decode_s"] += t1 - first
            new = out[0][inputs["input_ids"].shape[1]:]
            stats["generated_tokens"] += int(new.shape[0])
            text = tok.decode(new, skip_special_tokens=True)
            raws.append(text)
            parsed = parse_ranking(text, len(idx), base=spec.id_base, cot=spec.cot)
            order = apply_window(order, (start, end), parsed.order)
            stats["windows"] += 1
        rankings[req.qid] = tuple(cands[i].docid for i in order)
    return rankings, raws, stats


def main(argv: list[str] | None = None) -> int:
    import torch

    from data_prep.prompts import get_prompt_spec
    from data_prep.readers import read_rankgpt_json
    from inference.engine import HFBackend
    from inference.engine.first_token import HFFirstTokenScorer
    from inference.reranker import ListwiseReranker

    args = parse_args(argv)
    if args.dry_run:
        args.random_8b, args.queries, args.budgets = True, 2, [4]
    ft_sizes = sorted({1, args.batch_size}) if args.first_token_batch_sizes is None else args.first_token_batch_sizes
    torch.set_num_threads(args.threads)
    model, tok, what = load_model(args)
    requests = read_rankgpt_json(args.input)[: args.queries]
    spec = get_prompt_spec("dear-card")

    def sync() -> None:
        if torch.cuda.is_available() and args.device.startswith("cuda"):
            torch.cuda.synchronize()

    common = dict(window=args.window, stride=args.stride, top_k=args.top_k)
    # warm up both paths on one query
    if args.card:
        card_approach(model, tok, spec, requests[:1], budget=4, sync=sync, **common)
    ListwiseReranker(model, tok, spec, max_new_tokens=4, batch_size=args.batch_size, **common).rerank_batch(
        requests[:1])
    if ft_sizes:
        ListwiseReranker(model, tok, spec, scoring="first-token", **common).rerank_batch(requests[:1])
    report = {"model": what, "device": args.device, "threads": args.threads, "queries": len(requests),
              "batch_size": args.batch_size, "interleaved": args.interleave, **common, "runs": [],
              "first_token_batch_sizes": ft_sizes, "load_average_start": list(os.getloadavg())}
    approaches = {"ours": True, "ours_full_prefill": False} if args.ablation else {"ours": True}
    for budget in args.budgets:
        # The machine is shared: the approaches alternate over chunks of `batch_size` queries so that load
        # drifts hit all alike (a chunk is a full batch for ours, so chunking costs ours nothing).
        card = {"prefill_s": 0.0, "decode_s": 0.0, "windows": 0, "generated_tokens": 0, "wall_s": 0.0}
        ours = {name: {"wall_s": 0.0, "prefill_s": 0.0, "decode_s": 0.0, "windows": 0, "generated_tokens": 0,
                       "decode_steps": 0} for name in approaches}
        first = {bs: {"wall_s": 0.0, "prefill_s": 0.0, "decode_s": 0.0, "windows": 0, "generated_tokens": 0,
                      "forwards": 0, "padded_tokens": 0} for bs in ft_sizes}
        card_rank, card_raw = {}, []
        results: dict[str, list] = {name: [] for name in approaches}
        step = args.batch_size if args.interleave else len(requests)
        for lo in range(0, len(requests), step):
            chunk = requests[lo: lo + step]
            if args.card:
                t0 = time.perf_counter()
                ranks, raws, st = card_approach(model, tok, spec, chunk, budget=budget, sync=sync, **common)
                card["wall_s"] += time.perf_counter() - t0
                for k in ("prefill_s", "decode_s", "windows", "generated_tokens"):
                    card[k] += st[k]
                card_rank.update(ranks)
                card_raw.extend(raws)
            for name, trim in approaches.items():
                rr = ListwiseReranker(model, tok, spec, max_new_tokens=budget, batch_size=args.batch_size,
                                      backend=HFBackend(model, tok, trim_prefill=trim), **common)
                t0 = time.perf_counter()
                res = rr.rerank_batch(chunk)
                sync()
                acc = ours[name]
                acc["wall_s"] += time.perf_counter() - t0
                bs = rr.backend.stats
                acc["prefill_s"] += bs.prefill_s
                acc["decode_s"] += bs.decode_s
                acc["generated_tokens"] += bs.generated_tokens
                acc["decode_steps"] += bs.decode_steps
                acc["windows"] += sum(len(r.windows) for r in res)
                results[name].extend(res)
            for bs in ft_sizes:
                rr = ListwiseReranker(model, tok, spec, scoring="first-token", batch_size=bs, **common,
                                      backend=HFFirstTokenScorer(model, tok, batch_forward=bs > 1))
                t0 = time.perf_counter()
                res = rr.rerank_batch(chunk)
                sync()
                acc = first[bs]
                acc["wall_s"] += time.perf_counter() - t0
                acc["prefill_s"] += rr.backend.stats.prefill_s
                acc["forwards"] += rr.backend.forwards
                acc["padded_tokens"] += rr.backend.padded_tokens
                acc["windows"] += sum(len(r.windows) for r in res)
        row = {"budget": budget, "card": card} if args.card else {"budget": budget}
        for name in approaches:
            row[name] = dict(ours[name])
            if args.card:
                ours_raw = [w.raw for r in results[name] for w in r.windows if w.raw is not None]
                same_rank = sum(1 for r in results[name] if card_rank[r.qid] == r.docids)
                same_raw = sum(1 for a, b in zip(card_raw, ours_raw, strict=True) if a == b)
                row[name].update(speedup=card["wall_s"] / ours[name]["wall_s"],
                                 identical_rankings=f"{same_rank}/{len(results[name])}",
                                 identical_window_outputs=f"{same_raw}/{len(card_raw)}")
        for bs in ft_sizes:
            row[f"first_token_b{bs}"] = {**first[bs], "vs_generate": ours["ours"]["wall_s"] / first[bs]["wall_s"]}
            if args.card:
                row[f"first_token_b{bs}"]["speedup"] = card["wall_s"] / first[bs]["wall_s"]
        report["runs"].append(row)
        print(json.dumps(row, indent=1), flush=True)
    report["load_average_end"] = list(os.getloadavg())  # the machine is shared: note its load beside the figures
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


NAMES = {"card": "card (1 window per generate)", "ours": "ours (batched, early stop, last-row prefill)",
         "ours_full_prefill": "ours with the full prefill (ablation)"}


def _name(key: str) -> str:
    if key.startswith("first_token_b"):
        return f"first-token (batch {key[len('first_token_b'):]})"
    return NAMES[key]


def markdown(report: dict) -> str:
    n = report["queries"]
    lines = [f"{report['model']} on {report['device']} ({report['threads']} threads), {n} queries, "
             f"window {report['window']} / stride {report['stride']} / top {report['top_k']}, "
             f"batch {report['batch_size']}; load average (1/5/15 min) "
             f"{'/'.join(f'{x:.1f}' for x in report.get('load_average_start', []))} at the start, "
             f"{'/'.join(f'{x:.1f}' for x in report.get('load_average_end', []))} at the end", "",
             "| budget | approach | wall s/query | windows/s | generated tokens | prefill s | decode s | decode steps "
             "| speedup | vs generation (ours) | identical rankings / window outputs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["runs"]:
        keys = [k for k in NAMES if k in row] + [k for k in row if k.startswith("first_token_b")]
        for key in keys:
            s = row[key]
            speed = "1.00x" if key == "card" else f"**{s['speedup']:.2f}x**" if "speedup" in s else "-"
            same = "" if key == "card" or "identical_rankings" not in s else (
                f"{s['identical_rankings']}, {s['identical_window_outputs']}")
            vs = f"**{s['vs_generate']:.2f}x**" if "vs_generate" in s else ""
            lines.append(f"| {row['budget']} | {_name(key)} | {s['wall_s'] / n:.3f} | {s['windows'] / s['wall_s']:.2f} "
                         f"| {s['generated_tokens']} | {s['prefill_s']:.1f} | {s['decode_s']:.1f} "
                         f"| {s.get('decode_steps', '')} | {speed} | {vs} | {same} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

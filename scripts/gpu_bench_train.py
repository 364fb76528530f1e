"""GPU training benchmark: LoRA steps on a random-weight Llama-3.1-8B-shaped model in bf16 at the shipped max_length.

    python scripts/gpu_bench_train.py --out gpu_bench_train.json              # on a CUDA machine
    python scripts/gpu_bench_train.py --dry-run --out /tmp/dry.json           # CPU, tiny shape: checks the code

Reads the LoRA shape and ``max_length`` from the shipped recipe (``--config``, default
``configs/train/llama31_8b_listwise_lora.yaml``), builds the Llama-3.1-8B architecture with random bf16 weights
directly on the GPU (nothing is downloaded), wraps it with the recipe's PEFT LoRA, enables gradient
checkpointing as the recipe does, and times ``--steps`` optimizer steps (after ``--warmup``) of completion-only
next-token loss on random token sequences of ``--seq-len`` tokens (the last ``--completion-tokens`` carry the
loss, as in listwise SFT; the LM head runs on those positions only, as TRL's fused head does).

Records tokens/s, MFU and peak memory as JSON:

* model FLOPs per token = 4 x (non-embedding base parameters) [forward 2N + input-gradient backward 2N: the frozen
  base has no weight gradients] + LoRA (6 x its parameters) + causal attention 3 x 2·L·T·d (forward + 2x
  backward, halved for the causal mask); the gradient-checkpointing recompute is NOT counted in MFU (it is in HFU).
* MFU = model FLOPs / step time / peak dense bf16 FLOP/s of the GPU (table below, or ``--peak-tflops``).

Then (``--grpo-steps`` > 0, after the SFT figures are written) it times GRPO steps of the same LoRA-wrapped model
with TRL's ``GRPOTrainer`` and the GRPO recipe's settings (``--grpo-config``, default
``configs/train/llama31_8b_listwise_grpo.yaml``: 8 answers per window, 2 windows per optimizer step on one GPU,
``max_completion_length`` 128, beta 0.001 so the frozen reference adapter runs too), transformers generation (no
vLLM on the check machine), prompts of ``--grpo-prompt-tokens`` tokens (DL19 passages in the DeAR card prompt, cut
to that length; ~1,650 is a 20-passage window), and the real rewards. The random model rarely ends an answer, so
every answer runs to ``max_completion_length``: the slow case. Recorded under ``"grpo"`` in the same JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Dense bf16 tensor-core peak (no sparsity), TFLOP/s, by substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {
    "GH200": 989.4, "H200": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4,  # H100 = SXM/HBM3
    "B200": 2250.0, "A100": 312.0, "A800": 312.0, "L40S": 362.1, "L40": 181.0, "A6000": 154.8, "A10G": 125.0,
    "A10": 125.0, "L4": 121.0, "RTX 4090": 165.2, "RTX 3090": 71.0, "V100": 125.0,
}

LLAMA31_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                  rope_theta=500000.0, tie_word_embeddings=False)
TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, rope_theta=500000.0, tie_word_embeddings=False)


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS.items():  # first match; specific keys come first
        if key in device_name:
            return value
    return None


def model_flops_per_step(*, base_params: int, lora_params: int, layers: int, hidden: int, seq: int, batch: int,
                         head_params: int, loss_tokens: int) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs incl. checkpoint recompute) for one optimizer step."""
    tokens = seq * batch
    linear = 4 * base_params * tokens + 6 * lora_params * tokens
    head = 6 * head_params * loss_tokens * batch
    attn_fwd = 2 * layers * seq * seq * hidden * batch  # QK^T + AV, 2 FLOPs per MAC, halved for causal
    model = linear + head + 3 * attn_fwd
    recompute = 2 * base_params * tokens + attn_fwd
    return float(model), float(model + recompute)


def read_recipe(config: str):
    from dear_train import sft
    from dear_train.config import parse_config

    script, args, model_args = parse_config(sft.config_classes(), ["--config", config, "--dataset_path", "unused"])
    return args, model_args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "train" / "llama31_8b_listwise_lora.yaml"))
    p.add_argument("--seq-len", type=int, default=None, help="default: the recipe's max_length")
    p.add_argument("--batch", type=int, default=1, help="sequences per step (each of --seq-len tokens)")
    p.add_argument("--completion-tokens", type=int, default=100, help="tokens that carry the loss")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, flash_attention_2, eager)")
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's dense bf16 peak")
    p.add_argument("--dry-run", action="store_true", help="tiny shape, fp32 on CPU: check the code path only")
    p.add_argument("--out", default=None, help="write the JSON result here")
    p.add_argument("--grpo-steps", type=int, default=3, help="GRPO steps timed after the SFT steps (0: none)")
    p.add_argument("--grpo-warmup", type=int, default=1, help="untimed GRPO steps first (at least 1)")
    p.add_argument("--grpo-config", default=str(REPO / "configs" / "train" / "llama31_8b_listwise_grpo.yaml"))
    p.add_argument("--grpo-prompt-tokens", type=int, default=1650, help="tokens per GRPO prompt")
    a = p.parse_args(argv)

    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import get_peft_config

    train_args, model_args = read_recipe(a.config)
    seq = a.seq_len or (128 if a.dry_run else train_args.max_length)
    if a.dry_run:
        device, dtype, shape = torch.device("cpu"), torch.float32, TINY
        steps, warmup = min(a.steps, 2), min(a.warmup, 1)
    else:
        if not torch.cuda.is_available():
            print("gpu_bench_train: no CUDA device (use --dry-run to check the script on CPU)", file=sys.stderr)
            return 2
        device, dtype, shape = torch.device("cuda"), torch.bfloat16, LLAMA31_8B
        steps, warmup = a.steps, a.warmup
    completion = min(a.completion_tokens, seq - 1)
    cfg = LlamaConfig(**shape, attn_implementation=a.attn)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build the weights in bf16 directly (no fp32 copy of 8B on the GPU)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(default_dtype)
    build_s = time.perf_counter() - t0
    model.config.use_cache = False
    model = get_peft_model(model, get_peft_config(model_args))
    gc = train_args.gradient_checkpointing and not a.no_gradient_checkpointing
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    trainable = [q for q in model.parameters() if q.requires_grad]
    lora_params = sum(q.numel() for q in trainable)
    base = model.get_base_model()
    embed = base.get_input_embeddings().weight.numel()
    head = base.get_output_embeddings().weight.numel()
    base_params = sum(q.numel() for q in model.parameters()) - lora_params - embed - head
    opt = torch.optim.AdamW(trainable, lr=train_args.learning_rate, fused=device.type == "cuda")

    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, shape["vocab_size"], (a.batch, seq), generator=gen).to(device)
    labels = ids[:, -completion:]

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        s = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=device.type == "cuda"):
            out = model(input_ids=ids, logits_to_keep=completion + 1)
            logits = out.logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if not torch.isfinite(loss):
            raise SystemExit(f"non-finite loss {loss.item()}")
        return time.perf_counter() - s

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        step()
    times = [step() for _ in range(steps)]
    step_s = statistics.median(times)
    tokens = a.batch * seq
    mflops, hflops = model_flops_per_step(base_params=base_params, lora_params=lora_params,
                                          layers=shape["num_hidden_layers"], hidden=shape["hidden_size"], seq=seq,
                                          batch=a.batch, head_params=head, loss_tokens=completion)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu"
    peak = peak_tflops(name, a.peak_tflops) if device.type == "cuda" else a.peak_tflops
    result = {
        "device": name,
        "dry_run": a.dry_run,
        "shape": "tiny" if a.dry_run else "Llama-3.1-8B",
        "dtype": str(dtype).replace("torch.", ""),
        "attn_implementation": a.attn,
        "gradient_checkpointing": gc,
        "seq_len": seq,
        "batch": a.batch,
        "loss_tokens_per_sequence": completion,
        "lora_trainable_params": lora_params,
        "base_params_non_embedding": base_params,
        "model_build_s": build_s,
        "steps_timed": steps,
        "step_s_median": step_s,
        "step_s_all": times,
        "tokens_per_s": tokens / step_s,
        "model_tflops_per_step": mflops / 1e12,
        "achieved_model_tflops": mflops / step_s / 1e12,
        "peak_bf16_tflops": peak,
        "mfu": (mflops / step_s / 1e12 / peak) if peak else None,
        "hfu": (hflops / step_s / 1e12 / peak) if peak else None,
        "peak_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "peak_memory_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if device.type == "cuda" else None,
        "torch": torch.__version__,
    }
    text = json.dumps(result, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    if a.grpo_steps > 0:  # the SFT figures are on disk already: a GRPO failure or timeout cannot lose them
        del opt
        model.zero_grad(set_to_none=True)
        result["grpo"] = grpo_timing(model, a, dry_run=a.dry_run)
        text = json.dumps(result, indent=2)
        if a.out:
            Path(a.out).write_text(text + "\n")
        print(json.dumps(result["grpo"], indent=2))
    return 0


def grpo_prompts(tokenizer, count: int, tokens: int) -> list[str]:
    """``count`` DeAR-card prompts of 20 DL19 passages (synthetic text when the data is absent), each cut to about
    ``tokens`` tokens of ``tokenizer``."""
    from data_prep.prompts import get_prompt_spec, render_prompt

    data = REPO.parent / "shared" / "data" / "trec-dl19" / "retrieve_results_dl19_top100.json"
    spec = get_prompt_spec("dear-card")
    if data.is_file():
        from data_prep.readers import read_rankgpt_json

        windows = [(r.query, [c.passage() for c in r.candidates[:20]]) for r in read_rankgpt_json(data)[:count]]
    else:
        words = "passage ranking query relevance document search retrieval answer evidence".split()
        windows = [(f"query {i}", [" ".join(words[(i + j + k) % len(words)] for k in range(60)) for j in range(20)])
                   for i in range(count)]
    out = []
    for i in range(count):
        query, passages = windows[i % len(windows)]
        ids = tokenizer(render_prompt(spec, query, passages).text, add_special_tokens=False)["input_ids"]
        while len(ids) < tokens:  # a short prompt (tiny tokenizer, small data): repeat it to the length
            ids = ids + ids
        out.append(tokenizer.decode(ids[:tokens]))
    return out


def grpo_timing(model, a, *, dry_run: bool) -> dict:
    """Seconds per GRPO optimizer step of ``model`` (a PEFT LoRA model) with the GRPO recipe's settings."""
    import tempfile

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from data_prep.prompts import get_prompt_spec
    from dear_train.config import parse_config
    from dear_train.grpo.config import config_classes
    from dear_train.grpo.rewards import reward_functions
    from dear_train.tiny_model import build_tokenizer

    steps = min(a.grpo_steps, 2) if dry_run else a.grpo_steps
    warmup = 1 if dry_run else max(1, a.grpo_warmup)  # a step is timed from the end of the one before
    out_dir = tempfile.mkdtemp(prefix="gpu-bench-grpo-")
    overrides = ["--max_steps", str(warmup + steps), "--report_to", "none", "--save_strategy", "no",
                 "--eval_strategy", "no", "--logging_steps", "1", "--use_vllm", "false", "--disable_tqdm", "true",
                 "--output_dir", out_dir, "--dataset_path", tempfile.mkdtemp(prefix="gpu-bench-grpo-data-"),
                 "--dataloader_num_workers", "0"]  # the prompts are built here; the path is never read
    if dry_run:
        overrides += ["--use_cpu", "true", "--max_completion_length", "16", "--num_generations", "4",
                      "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2"]
    script, args, _ = parse_config(config_classes(), ["--config", a.grpo_config, *overrides])
    tokenizer = build_tokenizer()
    prompt_tokens = 128 if dry_run else a.grpo_prompt_tokens
    windows_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps // args.num_generations
    n = windows_per_step * (warmup + steps)
    prompts = grpo_prompts(tokenizer, n, prompt_tokens)
    dataset = Dataset.from_dict({"prompt": prompts, "qid": [str(i) for i in range(n)],
                                 "docids": [[f"d{j}" for j in range(20)]] * n, "grades": [[0] * 20] * n})
    cuda = torch.cuda.is_available() and not dry_run
    ends: list[float] = []

    class _Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            if cuda:
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer = GRPOTrainer(model=model, reward_funcs=reward_functions(get_prompt_spec("dear-card")), args=args,
                          train_dataset=dataset, processing_class=tokenizer, callbacks=[_Clock()])
    init_s = time.perf_counter() - started
    trainer.train()
    times = [end - previous for previous, end in zip(ends[warmup - 1:-1], ends[warmup:], strict=True)]
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "steps_timed": len(times),
        "step_s_median": statistics.median(times),
        "step_s_all": times,
        "answers_per_step": args.per_device_train_batch_size * args.gradient_accumulation_steps,
        "windows_per_step": windows_per_step,
        "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length,
        "prompt_tokens": prompt_tokens,
        "completion_tokens_mean": statistics.fmean(h["completions/mean_length"] for h in logs),
        "beta": args.beta,
        "generation": "transformers",
        "trainer_init_s": init_s,
        "peak_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


if __name__ == "__main__":
    raise SystemExit(main())

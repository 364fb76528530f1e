"""The model card (README.md with Hub YAML metadata) written into every export.

Everything in it comes from the adapter folder: ``adapter_config.json`` (LoRA config),
``dear_training.json`` (base model, training config, package versions, dataset), ``ranking_eval.jsonl``
(the nDCG table) and ``prompt_spec.json`` (the exact prompt, rendered for a small real example).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from data_prep.pointwise_format import PairFormat
from data_prep.prompts import Prompt, PromptSpec, TokenizerLike, model_input_text, render_prompt
from dear_train.export.verify import VerificationReport

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# training settings worth a line in the summary (the full config follows in a collapsed block)
SUMMARY_KEYS = (
    "learning_rate", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "packing", "bf16", "fp16",
    "gradient_checkpointing", "deepspeed", "optim", "weight_decay", "max_grad_norm", "seed", "prompt_template",
    "window", "completion_only_loss", "assistant_only_loss", "use_liger_kernel", "lora_r", "lora_alpha",
    "lora_dropout", "lora_target_modules", "lora_modules_to_save", "load_in_4bit", "load_in_8bit", "model_dtype",
    "attn_implementation",
)
LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "bias", "use_rslora",
             "use_dora", "task_type")

LICENSES = (("llama-3.3", "llama3.3"), ("llama-3.2", "llama3.2"), ("llama-3.1", "llama3.1"),
            ("llama3.1", "llama3.1"), ("llama-3", "llama3"), ("llama3", "llama3"), ("llama-2", "llama2"))


def is_hub_id(name: str) -> bool:
    """``owner/name`` that is not a folder on this machine (a local path is no Hub metadata)."""
    return bool(HUB_ID.match(name)) and not Path(name).exists()


def infer_license(base_model: str) -> str:
    """The base model's license id for the card's metadata (an adapter inherits its base's terms)."""
    low = base_model.lower()
    for needle, lic in LICENSES:
        if needle in low:
            return lic
    return "other"


def example_prompt(spec: PromptSpec, tokenizer: TokenizerLike | None = None, n: int = 3) -> tuple[str, list[str], Prompt]:
    """A small real example (the first NovelEval sample query, ``n`` passages) rendered with ``spec``."""
    from data_prep.samples import load_noveleval_sample

    requests, _ = load_noveleval_sample()
    req = requests[0]
    passages = [c.passage() for c in req.candidates[:n]]
    return req.query, passages, render_prompt(spec, req.query, passages, tokenizer=tokenizer)


def _py_str(text: str, indent: str = "    ") -> str:
    """``text`` as a parenthesised Python literal, one source line per line of text (exact bytes)."""
    lines = text.splitlines(keepends=True) or [""]
    return "(\n" + "".join(f"{indent}{line!r}\n" for line in lines) + ")"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple):
        return ", ".join(f"`{x}`" for x in v) if v else "-"
    if v is None:
        return "-"
    return f"`{v}`" if isinstance(v, str) else str(v)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def eval_table(evals: list[dict[str, Any]]) -> str:
    """The ranking evaluations recorded during training as a Markdown table (metrics x100, 2 decimals)."""
    if not evals:
        return "No ranking evaluation was recorded during training (the folder has no `ranking_eval.jsonl`)."
    names = sorted({m for e in evals for m in e["metrics"]},
                   key=lambda m: (not m.startswith("ndcg"), m.split("@")[0], int(m.split("@")[1])
                                  if "@" in m and m.split("@")[1].isdigit() else 0))
    rows = []
    for e in sorted(evals, key=lambda e: (str(e.get("dataset", "")), int(e.get("step", 0)))):
        row = [str(e.get("step", "-")), str(e.get("dataset", "-"))]
        row += [f"{100 * e['metrics'][m]:.2f}" if m in e["metrics"] else "-" for m in names]
        share = e.get("valid_window_share")
        row.append(f"{100 * share:.1f}%" if isinstance(share, int | float) else "-")
        rows.append(row)
    return _table(["step", "dataset", *names, "windows parsed without repair"], rows)


def build_model_card(
    *,
    training: dict[str, Any],
    adapter_config: dict[str, Any],
    spec: PromptSpec,
    evals: list[dict[str, Any]],
    merged: bool,
    dtype: str,
    repo_id: str,
    tokenizer: TokenizerLike | None = None,
    verification: VerificationReport | None = None,
    license: str | None = None,
    pair_format: PairFormat | None = None,
) -> str:
    """The README.md text: YAML front matter (validated by huggingface_hub) and a Markdown body. A listwise
    adapter's card shows its prompt (``spec``); a pointwise one's (``pair_format`` given) its pair encoding."""
    from huggingface_hub import ModelCard, ModelCardData

    base = str(training.get("base_model") or adapter_config.get("base_model_name_or_path") or "")
    pointwise = pair_format is not None
    task = str(training.get("task") or ("pointwise" if pointwise else "listwise"))
    dataset = training.get("dataset") or {}
    data_path = str(dataset.get("path") or "")
    lic = license or infer_license(base)
    meta = ModelCardData(
        base_model=base if is_hub_id(base) else None,
        library_name="transformers" if merged else "peft",
        pipeline_tag="text-ranking" if pointwise else "text-generation",
        license=lic,
        datasets=[data_path] if is_hub_id(data_path) else None,
        tags=["reranking", "dear", task, "llm-reranker", "text-ranking", "lora"]
        + (["merged"] if merged else ["peft"]),
    )

    lora = [[k, _fmt(sorted(v) if k == "target_modules" and isinstance(v, list) else v)]
            for k in LORA_KEYS if k in adapter_config for v in [adapter_config[k]]]
    config = training.get("config") or {}
    summary = [[k, _fmt(config[k])] for k in SUMMARY_KEYS if k in config]
    versions = [[k, f"`{v}`"] for k, v in sorted((training.get("versions") or {}).items())]

    what = (f"the merged weights (LoRA merged into `{base}`, saved in {dtype})" if merged
            else f"a LoRA adapter for `{base}`")
    checked = ("merged model's" if merged else "exported adapter's")
    if pointwise:
        intro = (f"A DeAR-style pointwise (stage-1) LLM document reranker: {what}, with its trained one-logit "
                 "sequence-classification head. It scores a (query, passage) pair; rank the passages by score, "
                 "highest first. Exported with `dear export` from the dear-reranker toolkit, which verified "
                 f"before writing it that the {checked} scores of real (query, passage) pairs equal the source "
                 "adapter's and differ from the base model's.")
    else:
        assert spec is not None, "a listwise card needs the prompt spec"
        query, passages, prompt = example_prompt(spec, tokenizer)
        model_input = model_input_text(prompt, tokenizer) if tokenizer is not None else (prompt.text or "")
        b = spec.id_base
        answer = spec.completion_prefix + " > ".join(f"[{i + b}]" for i in (1, 0, 2))
        intro = (f"A DeAR-style {task} LLM document reranker: {what}. Given a query and a window of passages it "
                 f"writes a ranking of passage identifiers such as `{answer.strip()}`. Exported with `dear export` "
                 f"from the dear-reranker toolkit, which verified before writing it that the {checked} logits on "
                 "real ranking prompts equal the source adapter's and differ from the base model's.")
    parts = [
        f"# {repo_id.rsplit('/', 1)[-1]}",
        intro,
        "## Base model",
        f"`{base}`" + ("" if is_hub_id(base) else " (a local path when this was exported; load the same "
                       "weights from wherever you keep them)"),
        "## LoRA configuration",
        _table(["setting", "value"], lora) if lora else "Not recorded.",
        "## Training",
        f"Task: `{task}`. Dataset: `{data_path or 'not recorded'}`"
        + (f" (fingerprint `{dataset['fingerprint']}`)" if dataset.get("fingerprint") else "") + ".",
        _table(["setting", "value"], summary) if summary else "No training settings recorded.",
        "<details><summary>Full training configuration</summary>\n\n```json\n"
        + json.dumps(config, indent=2, sort_keys=True, default=str) + "\n```\n\n</details>",
        "### Package versions",
        _table(["package", "version"], versions) if versions else "Not recorded.",
        "## Evaluation",
        "Ranking evaluations run during training (nDCG in %, trec_eval semantics):",
        eval_table(evals),
    ]
    if verification is not None:
        on = (f"{verification.positions} (query, passage) pairs of {verification.probes} queries" if pointwise
              else f"{verification.probes} ranking prompts ({verification.positions} next-token distributions at "
                   "the end of the prompts)")
        parts += [
            "## Export check",
            f"On {on} in {verification.dtype}: "
            f"max relative {'score' if pointwise else 'logit'} difference to the source adapter "
            f"{verification.export_vs_source:.3g} (tolerance {verification.tolerance:g}); to the base model "
            f"{verification.export_vs_base:.3g}.",
        ]
    if pointwise:
        parts += _pointwise_usage(repo_id, merged, pair_format, tokenizer)
        return str(ModelCard("---\n" + meta.to_yaml() + "\n---\n\n" + "\n\n".join(parts) + "\n"))
    parts += [
        "## Prompt",
        f"The model must be given exactly the prompt it was trained on. Prompt spec (`prompt_spec.json`, "
        f"rendered by `data_prep.prompts.render_prompt`):\n\n```json\n{json.dumps(spec.to_json(), indent=2)}\n```",
        f"Passages are cut to {spec.truncate_length} {spec.truncate_unit}, identifiers start at {b}. "
        f"The exact model input for the query \"{query}\" and {len(passages)} passages"
        + (" (the tokenizer adds `<|begin_of_text|>`)" if prompt.text is not None else "")
        + ":\n\n```text\n" + model_input + "\n```",
        f"The model continues with a ranking such as `{answer}` (greedy decoding).",
        "## Usage",
        "### With dear-reranker",
        "```python\nfrom inference import ListwiseReranker\n\n"
        f"reranker = ListwiseReranker.from_pretrained({_py(repo_id)})  # reads prompt_spec.json\n"
        "order = reranker.rerank(query, documents)  # indices into documents, best first\n```",
        "or from the command line, over first-stage candidates in RankGPT JSON (or a TREC run with a corpus "
        f"and topics, see `dear rerank --help`):\n\n```bash\ndear rerank --model {shlex.quote(repo_id)} --input candidates.json "
        "--out run.trec --qrels qrels.txt\n```",
        "### With transformers" + ("" if merged else " + PEFT"),
        _plain_snippet(repo_id, merged, prompt, model_input, len(passages)),
    ]
    body = "\n\n".join(parts) + "\n"
    return str(ModelCard("---\n" + meta.to_yaml() + "\n---\n\n" + body))


def _py(text: str) -> str:
    """A Python string literal of ``text`` (a local path may hold spaces, quotes or backslashes)."""
    return json.dumps(text)


def _snippet_head(module: str, loader: str, repo_id: str) -> list[str]:
    """The first lines of a plain transformers/PEFT usage snippet: imports and the tokenizer."""
    return ["```python", "import torch", f"from {module} import {loader}", "from transformers import AutoTokenizer",
            "", f"tokenizer = AutoTokenizer.from_pretrained({_py(repo_id)})"]


def _plain_snippet(repo_id: str, merged: bool, prompt: Prompt, model_input: str, n: int) -> str:
    loader = "AutoModelForCausalLM" if merged else "AutoPeftModelForCausalLM"
    module = "transformers" if merged else "peft"
    lines = [
        *_snippet_head(module, loader, repo_id),
        f"model = {loader}.from_pretrained({_py(repo_id)}, dtype=torch.bfloat16, device_map=\"auto\")",
        "",
    ]
    if prompt.text is not None:
        lines += [
            f"# the exact training prompt for {n} passages (build yours with the same wording)",
            f"prompt = {_py_str(model_input)}",
            "inputs = tokenizer(prompt, return_tensors=\"pt\").to(model.device)  # adds <|begin_of_text|>",
        ]
    else:
        messages = json.dumps([dict(m) for m in prompt.messages or ()], indent=2, ensure_ascii=False)
        lines += [
            f"# the exact training conversation for {n} passages",
            f"messages = {messages}",
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\","
            " return_dict=True).to(model.device)",
        ]
    lines += [
        "out = model.generate(**inputs, max_new_tokens=200, do_sample=False)",
        "print(tokenizer.decode(out[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))",
        "```",
    ]
    return "\n".join(lines)


def _pointwise_usage(repo_id: str, merged: bool, fmt: PairFormat, tokenizer: TokenizerLike | None) -> list[str]:
    """The input and usage sections of a pointwise card: the exact pair encoding, and snippets that run."""
    from data_prep.samples import load_noveleval_sample

    req = load_noveleval_sample()[0][0]
    doc = req.candidates[0]
    layout = (f"`<bos>` + `{fmt.query_prefix}{{query}}` (cut to {fmt.q_max_len} tokens) + `<bos>` + "
              f"`{fmt.doc_prefix}{{title}} {{text}}` (cut to {fmt.p_max_len - 3} tokens), each part tokenized "
              "without special tokens, padded on the right")
    parts = [
        "## Input",
        "The model must be given pairs encoded exactly as it was trained. Pair format (`pointwise_format.json`, "
        f"applied by `data_prep.pointwise_format.encode_pair`):\n\n```json\n{json.dumps(fmt.to_json(), indent=2)}\n```",
        f"Each pair is {layout}; the score is the classifier's single logit, pooled (as in training) at the last "
        "token that is not the config's `pad_token_id`.",
    ]
    if tokenizer is not None:
        from data_prep.pointwise_format import document_text, encode_pair

        ids = encode_pair(tokenizer, req.query, document_text(doc.text, doc.title), fmt)
        parts.append(f"For the query \"{req.query}\" and its first passage the model reads:\n\n```text\n"
                     + tokenizer.decode(ids) + "\n```")
    loader = "AutoModelForSequenceClassification" if merged else "AutoPeftModelForSequenceClassification"
    module = "transformers" if merged else "peft"
    parts += [
        "## Usage",
        "### With dear-reranker",
        "```python\nfrom inference import PointwiseReranker\n\n"
        f"reranker = PointwiseReranker.from_pretrained({_py(repo_id)})  # reads pointwise_format.json\n"
        "scores = reranker.score(query, documents)  # one score per document, input order\n```",
        "or as DeAR's stage 1 in front of a listwise model (see `dear rerank --help`):\n\n```bash\n"
        f"dear rerank --pointwise {shlex.quote(repo_id)} --listwise LISTWISE_ADAPTER --input candidates.json --out run.trec\n```",
        "### With transformers" + ("" if merged else " + PEFT"),
        "\n".join([
            *_snippet_head(module, loader, repo_id),
            f"model = {loader}.from_pretrained({_py(repo_id)}, num_labels=1, dtype=torch.float32).eval()",
            "",
            "def encode(query, document):  # the training layout: padded on the right to the fixed length",
            f"    q = tokenizer.encode({fmt.query_prefix!r} + query, add_special_tokens=False,\n"
            f"                         split_special_tokens=True)[:{fmt.q_max_len}]  # '<|eot_id|>' in text is text",
            f"    d = tokenizer.encode({fmt.doc_prefix!r} + document, add_special_tokens=False,\n"
            f"                         split_special_tokens=True)[:{fmt.p_max_len - 3}]",
            f"    ids = ([tokenizer.bos_token_id] + q + [tokenizer.bos_token_id] + d)[:{fmt.max_length}]",
            f"    pad = {fmt.max_length} - len(ids)",
            "    return torch.tensor([ids + [tokenizer.pad_token_id] * pad]), torch.tensor([[1] * len(ids) + [0] * pad])",
            "",
            "scores = []",
            "with torch.no_grad():",
            "    for doc in documents:",
            "        input_ids, attention_mask = encode(query, doc)",
            "        scores.append(model(input_ids=input_ids, attention_mask=attention_mask).logits.item())",
            "order = sorted(range(len(documents)), key=lambda i: -scores[i])  # best first",
            "```",
        ]),
    ]
    return parts

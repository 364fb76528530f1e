"""A tiny random Llama-3.1-architecture model and a locally trained Llama-3-style tokenizer.

Tests and the quickstart run the real code paths (PEFT, TRL, generate) on it offline in about a second;
nothing here downloads anything.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

BOS = "<|begin_of_text|>"
EOS_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
PAD = "<|finetune_right_pad_id|>"
SPECIAL_TOKENS = [BOS, EOS_TEXT, START_HEADER, END_HEADER, EOT, PAD]

# Llama-3's pre-tokenizer regex. Followed by ByteLevel(use_regex=False) so "\n\n" at the end of a prompt
# splits the same way as in "\n\n5" and prompt tokens stay a prefix of prompt+completion tokens.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def _training_corpus() -> list[str]:
    """Real text for the BPE merges: the embedded NovelEval sample plus the prompt templates' words."""
    from data_prep.samples import load_noveleval_sample

    requests, _ = load_noveleval_sample()
    lines: list[str] = []
    for r in requests:
        lines.append(r.query)
        lines.extend(c.text for c in r.candidates)
    from data_prep.prompts import PROMPT_SPECS, render_prompt

    for spec in PROMPT_SPECS.values():
        p = render_prompt(spec, "what is a query", ["first passage", "second passage"])
        lines.append(p.text or " ".join(m["content"] for m in p.messages or ()))
    # Rankings of ids 0..100, often enough that BPE learns every id as one token (first-token scoring reads the
    # logit of each window id as one token after "["; 100 copies cost about 0.4% longer prompts).
    lines.extend([" > ".join(f"[{i}]" for i in range(101))] * 100)
    lines.append("<think> reasoning </think> ### Final Reranking: system user assistant")
    return lines


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer with Llama-3 special tokens and chat template (a PreTrainedTokenizerFast)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_corpus(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        additional_special_tokens=[EOS_TEXT, START_HEADER, END_HEADER],
        model_max_length=131072,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 128,
    vocab_size: int = 1024,
    max_position_embeddings: int = 16384,
    seed: int = 0,
) -> Path:
    """Write a random Llama-3.1-architecture causal LM (GQA) and its tokenizer to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(EOT), tokenizer.convert_tokens_to_ids(EOS_TEXT)],
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "TINY_MODEL.json").write_text(
        json.dumps({"purpose": "random tiny Llama for tests and the quickstart", "seed": seed,
                    "parameters": sum(p.numel() for p in model.parameters())}, indent=2) + "\n"
    )
    logger.info("tiny model (%d parameters) written to %s", sum(p.numel() for p in model.parameters()), out)
    return out

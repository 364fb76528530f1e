"""Named, versioned listwise prompt specs and the one function that renders them.

Training data (`dear prep listwise`) and inference (`inference.ListwiseReranker`) both call
:func:`render_prompt`, so the bytes a model was trained on are the bytes it is run on. The spec travels
with the data (``prompt_spec.json`` in the prep output) and with the adapter folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from data_prep.prompt_tokens import encode_plain, model_input_ids, prompt_has_special_text
from data_prep.ranking import FINAL_MARKER, format_target
from data_prep.schema import DataError

PROMPT_SPEC_FILE = "prompt_spec.json"

Style = Literal["plain", "chat"]
Unit = Literal["chars", "words", "tokens"]


class TokenizerLike(Protocol):
    """The slice of a Hugging Face tokenizer the renderer needs."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class PromptSpec:
    """Everything that decides the bytes of a listwise prompt and its target."""

    name: str
    version: int
    style: Style
    id_base: int
    truncate_unit: Unit
    truncate_length: int
    system: str | None = None
    cot: bool = False
    completion_prefix: str = ""
    # With ``cot``: ask for reasoning followed by a ``### Final Reranking:`` line (and train on that
    # shape) instead of ``<think></think>`` then the bare ranking.
    final_marker: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PromptSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(
                f"unknown prompt spec keys {unknown}",
                fix=f"a prompt spec has only the keys {sorted(known)}",
            )
        return cls(**data)


DEAR_CARD = PromptSpec(
    name="dear-card",
    version=1,
    style="plain",
    id_base=0,
    truncate_unit="chars",
    truncate_length=300,
    completion_prefix=" ",
)

RANKGPT = PromptSpec(
    name="rankgpt",
    version=1,
    style="chat",
    id_base=1,
    truncate_unit="words",
    truncate_length=300,
    system="You are RankLLM, an assistant that ranks passages by relevance to the query.",
)

# The chain-of-thought teacher prompt (`dear teacher`): RankGPT's multi-turn layout, then a request for
# step-by-step reasoning closed by one "### Final Reranking: [a] > [b] > ..." line.
DEAR_COT = PromptSpec(
    name="dear-cot",
    version=1,
    style="chat",
    id_base=1,
    truncate_unit="words",
    truncate_length=300,
    system=RANKGPT.system,
    cot=True,
    final_marker=True,
)

PROMPT_SPECS: dict[str, PromptSpec] = {s.name: s for s in (DEAR_CARD, RANKGPT, DEAR_COT)}


def get_prompt_spec(name: str, **overrides: Any) -> PromptSpec:
    """A registered spec by name, optionally with fields changed (e.g. ``cot=True``)."""
    try:
        spec = PROMPT_SPECS[name]
    except KeyError:
        raise DataError(f"unknown prompt template {name!r}", fix=f"use one of {sorted(PROMPT_SPECS)}") from None
    return replace(spec, **overrides) if overrides else spec


def resolve_prompt_spec(name_or_path: str) -> PromptSpec:
    """A spec from a registered name, a ``prompt_spec.json`` file, or a folder holding one (a prep output
    or an adapter folder), so a model can be run with exactly the spec some data was built with."""
    path = Path(name_or_path)
    if name_or_path not in PROMPT_SPECS and path.exists():
        if path.is_file():
            return load_prompt_spec_file(path)
        spec = load_prompt_spec(path)
        if spec is None:
            raise DataError(f"no {PROMPT_SPEC_FILE} in this folder", path=str(path),
                            fix="pass a template name, a prompt_spec.json file, or a prep/adapter folder")
        return spec
    return get_prompt_spec(name_or_path)


def load_prompt_spec_file(path: str | Path) -> PromptSpec:
    from data_prep.readers import read_text

    try:
        return PromptSpec.from_json(json.loads(read_text(path, "prompt spec")))
    except (json.JSONDecodeError, TypeError) as err:
        raise DataError(f"unreadable prompt spec: {err}", path=str(path), fix="re-save it with save_prompt_spec") from err


def save_prompt_spec(directory: str | Path, spec: PromptSpec) -> Path:
    path = Path(directory) / PROMPT_SPEC_FILE
    path.write_text(json.dumps(spec.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def load_prompt_spec(directory: str | Path) -> PromptSpec | None:
    """The spec saved in a dataset or adapter folder, or None when the folder has none."""
    path = Path(directory) / PROMPT_SPEC_FILE
    return load_prompt_spec_file(path) if path.is_file() else None


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: plain ``text`` or chat ``messages`` (exactly one is set)."""

    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    passages: tuple[str, ...] = ()  # the passages as shown, after truncation

    def as_model_input(self) -> str | list[dict[str, str]]:
        return self.text if self.text is not None else [dict(m) for m in self.messages or ()]


def truncate_passage(text: str, unit: Unit, length: int, tokenizer: TokenizerLike | None = None) -> str:
    """Cut one passage to ``length`` characters, whitespace words or tokenizer tokens."""
    if unit == "chars":
        return text[:length]
    if unit == "words":
        return " ".join(text.split()[:length])
    if unit == "tokens":
        if tokenizer is None:
            raise ValueError("token truncation needs a tokenizer")
        ids = encode_plain(tokenizer, text)  # special-token strings in a passage are text (data_prep.prompt_tokens)
        return text if len(ids) <= length else tokenizer.decode(ids[:length], skip_special_tokens=True)
    raise ValueError(f"unknown truncation unit {unit!r}")


def _clean(text: str, spec: PromptSpec) -> str:
    # RankGPT strips an empty "Title: Content:" header; the card passes documents through unchanged.
    if spec.style == "chat":
        return text.replace("Title: Content: ", "").strip()
    return text


def _render(spec: PromptSpec, query: str, passages: list[str]) -> Prompt:
    n = len(passages)
    b = spec.id_base
    if spec.style == "plain":
        doc_list = "\n".join(f"[{i + b}] {p}" for i, p in enumerate(passages))
        text = (
            f"I will provide you with {n} passages, each indicated by a number identifier [].\n"
            f"Rank the passages based on their relevance to the search query: {query}.\n"
            f"{doc_list}\n"
            f"Search Query: {query}.\n"
            "Rank the passages above based on their relevance to the search query. "
            "Output the ranking as a list of numbers."
        )
        return Prompt(text=text, passages=tuple(passages))
    messages: list[dict[str, str]] = []
    if spec.system:
        messages.append({"role": "system", "content": spec.system})
    messages.append(
        {
            "role": "user",
            "content": f"I will provide you with {n} passages, each indicated by number identifier []. \n"
            f"Rank the passages based on their relevance to query: {query}.",
        }
    )
    messages.append({"role": "assistant", "content": "Okay, please provide the passages."})
    for i, p in enumerate(passages):
        messages.append({"role": "user", "content": f"[{i + b}] {p}"})
        messages.append({"role": "assistant", "content": f"Received passage [{i + b}]."})
    tail = (
        f"Search Query: {query}. \nRank the {n} passages above based on their relevance to the search query. "
        "The passages should be listed in descending order using identifiers. "
        "The most relevant passages should be listed first. The output format should be [] > [], e.g., "
        f"[{b}] > [{b + 1}]. "
    )
    if spec.cot and spec.final_marker:
        tail += (
            "First reason step by step about how each passage relates to the query, citing passages by "
            "their identifiers. Then finish with exactly one line of the form "
            f"\"{FINAL_MARKER} [{b}] > [{b + 1}] > ...\" that lists all {n} identifiers."
        )
    elif spec.cot:
        tail += "First reason step by step inside <think></think>, then give only the ranking."
    else:
        tail += "Only response the ranking results, do not say any word or explain."
    messages.append({"role": "user", "content": tail})
    return Prompt(messages=tuple(messages), passages=tuple(passages))


def prompt_token_count(prompt: Prompt, tokenizer: TokenizerLike) -> int:
    """Tokens the model sees for this prompt (chat template with generation header, or plain + BOS), with the
    passages' special-token strings counted as the plain text they are tokenized as."""
    if prompt_has_special_text(prompt, tokenizer):
        return len(model_input_ids(prompt, tokenizer))
    if prompt.text is not None:
        return len(tokenizer.encode(prompt.text))
    ids = tokenizer.apply_chat_template(
        [dict(m) for m in prompt.messages or ()], add_generation_prompt=True, tokenize=True
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def render_prompt(
    spec: PromptSpec,
    query: str,
    passages: list[str],
    *,
    tokenizer: TokenizerLike | None = None,
    max_tokens: int | None = None,
) -> Prompt:
    """Render the listwise prompt for ``query`` over ``passages`` (in the order shown to the model).

    Passages are first cut by the spec's unit. With ``max_tokens`` (and a tokenizer) a prompt that is
    still too long has all passages shrunk to a common token cap, never cut off mid-list.
    """
    if not query.strip():
        raise DataError("empty query", fix="drop the record or give the query text")
    cut = [
        truncate_passage(_clean(p, spec), spec.truncate_unit, spec.truncate_length, tokenizer)
        for p in passages
    ]
    prompt = _render(spec, query, cut)
    if max_tokens is None:
        return prompt
    if tokenizer is None:
        raise ValueError("max_tokens needs a tokenizer")
    if prompt_token_count(prompt, tokenizer) <= max_tokens:
        return prompt
    token_ids = [encode_plain(tokenizer, p) for p in cut]

    def at_cap(cap: int) -> Prompt:
        shown = [p if len(ids) <= cap else tokenizer.decode(ids[:cap], skip_special_tokens=True)
                 for p, ids in zip(cut, token_ids, strict=True)]
        return _render(spec, query, shown)

    def fits(cap: int) -> bool:
        return prompt_token_count(at_cap(cap), tokenizer) <= max_tokens

    hi = max((len(t) for t in token_ids), default=0)
    overhead = prompt_token_count(at_cap(0), tokenizer)
    if overhead > max_tokens:
        raise DataError(
            f"prompt needs more than {max_tokens} tokens even with empty passages",
            fix="raise max_tokens or use a smaller window",
            reason="over_max_tokens", field="max_tokens",
        )
    # Water-filling estimate of the common cap, then confirm it with real renders (boundary merges can
    # move the count by a few tokens); falls back to a binary search when the estimate is off.
    est = _water_fill([len(t) for t in token_ids], max_tokens - overhead)
    if fits(est) and (est >= hi or not fits(est + 1)):
        return at_cap(est)
    lo = 0
    while lo < hi:  # largest cap that fits
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return at_cap(lo)


def _water_fill(lengths: list[int], budget: int) -> int:
    """Largest cap c with sum(min(length, c)) <= budget."""
    cap, remaining, left = 0, budget, sorted(lengths)
    n = len(left)
    for i, length in enumerate(left):
        share = remaining // (n - i)
        if length > share:
            return max(cap, share)
        cap, remaining = length, remaining - length
    return max(cap, left[-1] if left else 0)


def training_record(
    spec: PromptSpec, prompt: Prompt, order: list[int], reasoning: str | None = None
) -> dict[str, Any]:
    """A TRL prompt/completion record: plain strings for plain specs, message lists for chat specs."""
    target = format_target(order, base=spec.id_base, reasoning=reasoning, cot=spec.cot,
                           final_marker=spec.final_marker)
    if prompt.text is not None:
        return {"prompt": prompt.text, "completion": spec.completion_prefix + target}
    return {
        "prompt": [dict(m) for m in prompt.messages or ()],
        "completion": [{"role": "assistant", "content": target}],
    }


def answer_start(spec: PromptSpec) -> str:
    """The text every completion of ``spec`` begins with, up to its first id: the completion prefix and the ``[``
    of the bracketed ranking (``" ["`` for dear-card, ``"["`` for the chat specs). First-token scoring appends it
    to the model input so the next token is the first id; training finds the first id right after it.

    Chain-of-thought specs have none (their completion starts with reasoning): a :class:`DataError`.
    """
    if spec.cot:
        raise DataError(f"prompt spec {spec.name!r} is chain-of-thought: its answer starts with reasoning, not with "
                        "the first id", fix="use generation for this spec, or a non-CoT spec (dear-card, rankgpt)")
    return spec.completion_prefix + "["


def model_input_text(prompt: Prompt, tokenizer: TokenizerLike) -> str:
    """The exact string a causal LM is given at inference: the plain text, or the chat template with
    the assistant header opened (what TRL tokenizes as the prompt part of a conversational record). Its ids are
    :func:`data_prep.prompt_tokens.model_input_ids` (special-token text in passages stays text)."""
    if prompt.text is not None:
        return prompt.text
    return tokenizer.apply_chat_template(
        [dict(m) for m in prompt.messages or ()], add_generation_prompt=True, tokenize=False
    )

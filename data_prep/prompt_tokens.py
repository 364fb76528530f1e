"""Prompts as token ids, with every text a user supplied (query, passages, titles) tokenized as plain text.

A tokenizer turns the string ``<|eot_id|>`` into the end-of-turn control token wherever it finds it. In a
rendered prompt that string belongs there only where the chat template put it; the same characters inside a
document are text. :func:`model_input_ids` keeps that distinction: the template's special tokens become their
ids, the text between them (message contents, the plain prompt) is encoded with ``split_special_tokens=True``.
Training (``dear_train.listwise_data``) and inference (``inference.reranker``) both call it, so a passage that
holds special-token text gives the same ids in both, and never a forged turn.

When no user text holds a special token's string (:func:`prompt_has_special_text` is False), the ids are exactly
what ``tokenizer(model_input_text(prompt))`` gives (a tokenizer splits its input at special tokens and encodes
the pieces one by one, which is what this module does); callers then keep tokenizing the text the usual way.
"""

from __future__ import annotations

import re
from typing import Any

from data_prep.schema import DataError

_PATTERNS: dict[int, tuple[Any, re.Pattern[str] | None]] = {}  # id(tokenizer) -> (tokenizer, pattern)
_MARKER_RANGE = range(0xE000, 0xF900)  # Unicode private use: a marker character no content holds


def special_tokens(tokenizer: Any) -> list[str]:
    """The strings a tokenizer turns into control tokens (its special added tokens), longest first."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    if isinstance(decoder, dict) and decoder:
        found = {str(getattr(t, "content", t)) for t in decoder.values() if getattr(t, "special", True)}
    else:
        found = set(getattr(tokenizer, "all_special_tokens", None) or ())
    return sorted((t for t in found if t), key=lambda t: (-len(t), t))


def special_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """A regex matching any special-token string of ``tokenizer`` (leftmost, longest first), cached; None when the
    tokenizer has none."""
    cached = _PATTERNS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    tokens = special_tokens(tokenizer)
    pattern = re.compile("|".join(re.escape(t) for t in tokens)) if tokens else None
    _PATTERNS[id(tokenizer)] = (tokenizer, pattern)
    return pattern


def user_texts(prompt: Any) -> list[str]:
    """The strings of a prompt that may hold user text: the plain prompt, or every message's content."""
    if prompt.text is not None:
        return [prompt.text]
    return [m["content"] for m in prompt.messages or ()]


def prompt_has_special_text(prompt: Any, tokenizer: Any) -> bool:
    """Whether any user text of ``prompt`` holds a special token's string (then only :func:`model_input_ids` gives
    the right ids; otherwise plain tokenization of the model input text gives the same)."""
    pattern = special_pattern(tokenizer)
    return pattern is not None and any(pattern.search(t) for t in user_texts(prompt))


def encode_plain(tokenizer: Any, text: str, add_special_tokens: bool = False) -> list[int]:
    """Ids of ``text`` with special-token strings as ordinary text (BOS/EOS from ``add_special_tokens`` only)."""
    return list(tokenizer(text, add_special_tokens=add_special_tokens, split_special_tokens=True)["input_ids"])


def model_input_ids(prompt: Any, tokenizer: Any, suffix: str = "") -> list[int]:
    """Token ids of ``model_input_text(prompt) + suffix`` (``prompt``: a :class:`data_prep.prompts.Prompt`), with the chat template's special tokens as control
    tokens and all message text (and a plain prompt, and ``suffix``) as plain text. Plain prompts get the
    tokenizer's BOS as :func:`~data_prep.prompts.prompt_token_count` counts it."""
    if prompt.text is not None:
        return encode_plain(tokenizer, prompt.text + suffix, add_special_tokens=True)
    return chat_ids([dict(m) for m in prompt.messages or ()], tokenizer, add_generation_prompt=True, suffix=suffix)


def chat_ids(messages: list[dict[str, str]], tokenizer: Any, *, add_generation_prompt: bool,
             suffix: str = "") -> list[int]:
    """Ids of ``apply_chat_template(messages) + suffix`` with the template's special tokens as control tokens and
    the messages' contents (and ``suffix``) as plain text."""
    pattern = special_pattern(tokenizer)
    messages = [dict(m) for m in messages]
    # Special-token strings in message contents are swapped for markers (a private-use character no content holds,
    # around a number), the template is rendered, split at the template's own special tokens, and each piece
    # between them encoded as plain text with the original strings put back.
    everything = "".join(m["content"] for m in messages) + suffix
    mark = next((chr(c) for c in _MARKER_RANGE if chr(c) not in everything), None)
    if mark is None:  # pragma: no cover - a prompt holding every private-use character
        raise DataError("a prompt holds every Unicode private-use character; cannot tokenize it safely",
                        fix="drop the record")
    originals: list[str] = []

    def to_marker(m: re.Match[str]) -> str:
        originals.append(m.group(0))
        return f"{mark}{len(originals) - 1}{mark}"

    if pattern is not None:
        for m in messages:
            m["content"] = pattern.sub(to_marker, m["content"])
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                             tokenize=False) + suffix
    back = re.compile(re.escape(mark) + r"(\d+)" + re.escape(mark))
    if len(back.findall(rendered)) != len(originals):
        raise DataError("the chat template changes message text, so special-token text in a passage cannot be kept "
                        "plain", reason="template_rewrites_content",
                        fix="remove special-token strings (like <|eot_id|>) from the passages, or use a plain prompt spec")
    ids: list[int] = []
    pos = 0
    pieces = list(pattern.finditer(rendered)) if pattern is not None else []
    for special in [*pieces, None]:
        end = special.start() if special is not None else len(rendered)
        if end > pos:
            text = back.sub(lambda m: originals[int(m.group(1))], rendered[pos:end])
            ids.extend(encode_plain(tokenizer, text))
        if special is not None:
            ids.append(int(tokenizer.convert_tokens_to_ids(special.group(0))))
            pos = special.end()
    return ids


# -- training records (TRL prompt/completion) -----------------------------------------------------------------


def _record_texts(record: dict[str, Any]) -> list[str]:
    out = []
    for part in (record["prompt"], record["completion"]):
        out.extend([part] if isinstance(part, str) else [m["content"] for m in part])
    return out


def record_has_special_text(record: dict[str, Any], tokenizer: Any) -> bool:
    """Whether a TRL prompt/completion record holds a special token's string in its text (a passage, the query,
    a teacher's reasoning)."""
    pattern = special_pattern(tokenizer)
    return pattern is not None and any(pattern.search(t) for t in _record_texts(record))


def _ids(out: Any) -> list[int]:
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def record_token_ids(record: dict[str, Any], tokenizer: Any) -> tuple[list[int], list[int]]:
    """(prompt ids, prompt + completion ids) of a TRL prompt/completion record as TRL's SFTTrainer tokenizes it
    (plain: BOS + text, the EOS TRL appends to the completion; chat: the template, with the generation header for
    the prompt alone), except that special-token text inside the record stays text, as at inference."""
    prompt, completion = record["prompt"], record["completion"]
    special = record_has_special_text(record, tokenizer)
    if isinstance(prompt, str):
        eos = tokenizer.eos_token or ""
        if not special:
            full_text = prompt + completion + ("" if completion.endswith(eos) else eos)
            return _ids(tokenizer(prompt)), _ids(tokenizer(full_text))
        tail = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []
        return (encode_plain(tokenizer, prompt, add_special_tokens=True),
                encode_plain(tokenizer, prompt + completion, add_special_tokens=True) + tail)
    messages, answer = [dict(m) for m in prompt], [dict(m) for m in completion]
    if not special:
        return (_ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)),
                _ids(tokenizer.apply_chat_template(messages + answer, tokenize=True)))
    return (chat_ids(messages, tokenizer, add_generation_prompt=True),
            chat_ids(messages + answer, tokenizer, add_generation_prompt=False))

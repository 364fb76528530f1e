"""Scorers: how one window's prompt becomes an order, the second axis beside the strategy.

``generate`` decodes the window's ranking and parses it (repairs counted); ``first-token`` (FIRST) runs one
forward pass over the prompt plus the answer start and orders the ids by their logit, with their
log-probabilities. Either way a window comes back as a :class:`WindowAnswer`, so strategies and the scheduler
never ask which scorer ran.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from data_prep.prompts import PromptSpec, answer_start
from data_prep.ranking import format_ranking, is_complete_ranking, parse_ranking

GENERATE, FIRST_TOKEN = "generate", "first-token"
SCORING_MODES = (GENERATE, FIRST_TOKEN)

_TRAILING_NUMBER = re.compile(r"\d+\s*$")
_NUMBER = re.compile(r"\d+")
_CLOSED_ID = re.compile(r"\[\s*\d+\s*\]")


@dataclass(frozen=True)
class WindowAnswer:
    """A window's order (0-based positions, best first) and what it took to get it."""

    order: tuple[int, ...]
    raw: str  # the generation, or (first-token) the ranking the logits give, in the answer format
    source: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: str
    repairs: dict[str, int] = field(default_factory=dict)
    logprobs: tuple[float, ...] | None = None  # first-token: each position's id, softmax over the window's ids


class Scorer(Protocol):
    """Turns a window prompt into a backend request, and the backend's answer into a :class:`WindowAnswer`."""

    name: str
    suffix: str  # what the scorer appends to a window's model input ("" for generation, the answer start for FIRST)

    def check(self, n: int) -> None:
        """Refuse, before any work, windows of up to ``n`` candidates this scorer cannot handle."""
        ...

    def default_backend(self, model: Any, tokenizer: Any, *, do_sample: bool, temperature: float, top_p: float,
                        seed: int) -> Any:
        ...

    def vllm_backend(self, engine: Any) -> Any:
        """The backend over a started ``VLLMBackend`` engine."""
        ...

    def request(self, key: Hashable, text: str, special: bool, n: int, *, budget: int, seed: int,
                best_only: bool, token_ids: list[int] | None = None) -> Any:
        """``text`` is the prompt's model input (the scorer appends its ``suffix``); ``token_ids``, when given, are
        the exact ids of ``text + suffix`` (prompts whose passages hold special-token text)."""
        ...

    def read(self, out: Any, n: int, tie_break: Sequence[int], *, best_only: bool) -> WindowAnswer:
        """``tie_break``: the window's candidates' first-stage ranks (equal logits keep that order)."""
        ...


class GenerateScorer:
    """Decode the window's ranking; stop as soon as it names every id (or, best-only, once the first id closes)."""

    name = GENERATE
    wants_logprobs = False  # what a vLLM engine must be started with
    suffix = ""

    def __init__(self, spec: PromptSpec, tokenizer: Any = None, *, early_stop: bool = True) -> None:
        self.spec = spec
        self.early_stop = early_stop

    def check(self, n: int) -> None:
        return None

    def default_backend(self, model: Any, tokenizer: Any, *, do_sample: bool, temperature: float, top_p: float,
                        seed: int) -> Any:
        from inference.engine.hf import HFBackend

        return HFBackend(model, tokenizer, do_sample=do_sample, temperature=temperature, top_p=top_p, seed=seed)

    def vllm_backend(self, engine: Any) -> Any:
        return engine

    def request(self, key: Hashable, text: str, special: bool, n: int, *, budget: int, seed: int,
                best_only: bool, token_ids: list[int] | None = None) -> Any:
        from inference.engine.types import GenerationRequest

        check = None
        if self.early_stop:
            check = (_first_id_check() if best_only and not self.spec.cot
                     else _completion_check(n, self.spec.id_base, self.spec.cot))
        return GenerationRequest(key=key, text=text, add_special_tokens=special, max_new_tokens=budget,
                                 is_complete=check, seed=seed, token_ids=token_ids)

    def read(self, out: Any, n: int, tie_break: Sequence[int], *, best_only: bool) -> WindowAnswer:
        parsed = parse_ranking(out.text, n, base=self.spec.id_base, cot=self.spec.cot)
        repairs = dict(parsed.repairs)
        if best_only:  # only the first id was asked for: the ids left out are no repair
            repairs.pop("missing", None)
        return WindowAnswer(order=tuple(parsed.order), raw=out.text, source=parsed.source,
                            prompt_tokens=out.prompt_tokens, generated_tokens=len(out.token_ids),
                            finish_reason=out.finish_reason, repairs=repairs)


class FirstTokenScorer:
    """One forward pass per window: the ids ordered by their logit right after the answer start."""

    name = FIRST_TOKEN
    wants_logprobs = True

    def __init__(self, spec: PromptSpec, tokenizer: Any, *, early_stop: bool = True) -> None:
        from inference.engine.first_token import IdTokenTable

        self.spec = spec
        self.suffix = answer_start(spec)  # chain-of-thought specs are refused here, with the fix
        self.ids = IdTokenTable(tokenizer, spec)

    def check(self, n: int) -> None:
        self.ids.for_window(n)

    def default_backend(self, model: Any, tokenizer: Any, *, do_sample: bool, temperature: float, top_p: float,
                        seed: int) -> Any:
        from inference.engine.first_token import HFFirstTokenScorer

        return HFFirstTokenScorer(model, tokenizer)

    def vllm_backend(self, engine: Any) -> Any:
        from inference.engine.first_token import VLLMFirstTokenScorer

        return VLLMFirstTokenScorer(engine)

    def request(self, key: Hashable, text: str, special: bool, n: int, *, budget: int, seed: int,
                best_only: bool, token_ids: list[int] | None = None) -> Any:
        from inference.engine.first_token import ScoreRequest

        return ScoreRequest(key=key, text=text + self.suffix, add_special_tokens=special,
                            id_tokens=self.ids.for_window(n), token_ids=token_ids)

    def read(self, out: Any, n: int, tie_break: Sequence[int], *, best_only: bool) -> WindowAnswer:
        from inference.engine.first_token import id_log_probs, window_order

        order = window_order(out.logits, tie_break)
        return WindowAnswer(order=tuple(order), raw=format_ranking(order, base=self.spec.id_base), source=FIRST_TOKEN,
                            prompt_tokens=out.prompt_tokens, generated_tokens=0, finish_reason=FIRST_TOKEN,
                            logprobs=tuple(id_log_probs(out.logits)))


def scorer_class(name: str) -> type:
    """The scorer named ``name`` (``generate`` or ``first-token``)."""
    if name not in SCORERS:
        raise ValueError(f"scoring must be one of {SCORING_MODES}, got {name!r}")
    return SCORERS[name]


def make_scorer(name: str, spec: PromptSpec, tokenizer: Any, *, early_stop: bool = True) -> Scorer:
    return scorer_class(name)(spec, tokenizer, early_stop=early_stop)


SCORERS: dict[str, type] = {GENERATE: GenerateScorer, FIRST_TOKEN: FirstTokenScorer}


def _completion_check(n: int, base: int, cot: bool) -> Callable[[str], bool]:
    """Early stop once the final ranking names all ``n`` ids; a trailing number may still grow ("[1" -> "[12]")."""

    def check(text: str) -> bool:
        if len(_NUMBER.findall(text)) < n:  # cheap: a full ranking holds at least n numbers
            return False
        return is_complete_ranking(_TRAILING_NUMBER.sub("", text), n, base=base, cot=cot)

    return check


def _first_id_check() -> Callable[[str], bool]:
    """Early stop once the answer holds one closed id ("[3]"): all a best-only window reads."""

    def check(text: str) -> bool:
        return _CLOSED_ID.search(text) is not None

    return check

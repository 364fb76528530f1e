"""vLLM generation backend (optional extra: ``pip install 'dear-reranker[vllm]'``, needs a GPU).

The LoRA adapter is served as an adapter (``enable_lora`` + ``LoRARequest``), never merged, and prefix caching
is on, so the shared instruction header of a query's windows is computed once. Requests stream through the
engine's ``add_request``/``step`` loop: a query's next window is added as soon as its previous one is parsed,
and a window whose partial output already holds a complete ranking is aborted (early stop).
Prompts are tokenized with the adapter's own tokenizer and passed as token ids, so the model sees exactly the
tokens the Hugging Face backend would give it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from data_prep.prompts import PromptSpec
from data_prep.schema import DataError
from inference.engine.text import eos_token_ids, tokenize_texts
from inference.engine.types import (
    FINISH_COMPLETE,
    FINISH_EOS,
    FINISH_LENGTH,
    BackendStats,
    Generation,
    GenerationRequest,
    Pull,
)


def require_vllm() -> Any:
    try:
        import vllm
    except ImportError as err:
        raise DataError("the vLLM backend needs the optional vllm package", reason="missing_extra",
                        fix="pip install 'dear-reranker[vllm]' on a machine with a CUDA GPU, or use --backend hf"
                        ) from err
    return vllm


class VLLMBackend:
    """Continuous batching through a vLLM engine; LoRA served unmerged."""

    def __init__(self, llm: Any, tokenizer: Any, *, lora_path: str | None = None, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.do_sample, self.temperature, self.top_p, self.seed = do_sample, temperature, top_p, seed
        self.lora = None
        if lora_path is not None:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("dear-adapter", 1, lora_path)
        self.eos_ids = sorted(eos_token_ids(None, tokenizer))  # vLLM also stops at the model's own EOS
        self.stats = BackendStats()
        self._ids = itertools.count()

    @classmethod
    def from_pretrained(cls, path: str, *, base_model: str | None = None, dtype: str = "auto",
                        prompt: str | None = None, trust_remote_code: bool = False, revision: str | None = None,
                        seed: int = 0, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                        gpu_memory_utilization: float = 0.85, max_model_len: int | None = None,
                        max_lora_rank: int = 64, first_token: bool = False,
                        max_logprobs: int = 100) -> tuple[VLLMBackend, Any, PromptSpec]:
        vllm = require_vllm()
        from inference.models import (
            ModelOptions,
            describe_source,
            resolve_spec,
            served_model,
            source_tokenizer,
        )

        options = ModelOptions(base_model=base_model, dtype=dtype, trust_remote_code=trust_remote_code,
                               revision=revision)
        source = describe_source(path, revision=revision)
        spec = resolve_spec(source, prompt, revision=revision)
        model, lora_path = served_model(source, options)
        kwargs: dict[str, Any] = {"model": model, "dtype": dtype, "trust_remote_code": trust_remote_code,
                                  "enable_prefix_caching": True, "seed": seed,
                                  "gpu_memory_utilization": gpu_memory_utilization}
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if lora_path is not None:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=1)
        if first_token:  # first-token scoring: log-probs over the allowed (window id) tokens only, one per id
            kwargs.update(logprobs_mode="processed_logprobs", max_logprobs=max_logprobs)
        llm = vllm.LLM(**kwargs)
        tokenizer = source_tokenizer(source, model if source.kind == "adapter" else None, options)  # base: fallback
        return cls(llm, tokenizer, lora_path=lora_path, do_sample=do_sample, temperature=temperature,
                   top_p=top_p, seed=seed), tokenizer, spec

    def _params(self, req: GenerationRequest) -> Any:
        from vllm import SamplingParams

        return SamplingParams(max_tokens=req.max_new_tokens, temperature=self.temperature if self.do_sample else 0.0,
                              top_p=self.top_p if self.do_sample else 1.0,
                              seed=(self.seed if req.seed is None else req.seed) if self.do_sample else None,
                              stop_token_ids=self.eos_ids, skip_special_tokens=True)

    def stream(self, pull: Pull, max_in_flight: int) -> Iterator[Generation]:
        engine = self.llm.llm_engine
        in_flight: dict[str, tuple[GenerationRequest, int]] = {}
        while True:
            for req in pull(max(0, max_in_flight - len(in_flight))):
                ids = tokenize_texts(self.tokenizer, [req])[0]
                rid = f"w{next(self._ids)}"
                engine.add_request(rid, {"prompt_token_ids": ids}, self._params(req), lora_request=self.lora)
                in_flight[rid] = (req, len(ids))
                self.stats.prefills += 1
                self.stats.prompt_tokens += len(ids)
            gone = [rid for rid, (req, _) in in_flight.items() if req.cancelled is not None and req.cancelled()]
            if gone:  # cancelled requests leave the engine's batch now; they yield nothing
                engine.abort_request(gone)
                for rid in gone:
                    del in_flight[rid]
                self.stats.cancelled += len(gone)
            if not in_flight:
                return
            self.stats.decode_steps += 1
            for out in engine.step():
                if out.request_id not in in_flight:
                    continue
                req, n_prompt = in_flight[out.request_id]
                comp = out.outputs[0]
                reason = None
                if out.finished:
                    reason = FINISH_LENGTH if comp.finish_reason == "length" else FINISH_EOS
                elif req.is_complete is not None and req.is_complete(comp.text):
                    engine.abort_request([out.request_id])
                    reason = FINISH_COMPLETE
                if reason is None:
                    continue
                del in_flight[out.request_id]
                token_ids = list(comp.token_ids)
                self.stats.generated_tokens += len(token_ids)
                yield Generation(key=req.key, text=comp.text, token_ids=token_ids, prompt_tokens=n_prompt,
                                 finish_reason=reason)


def max_model_len(backend: VLLMBackend) -> int | None:
    try:
        return int(backend.llm.llm_engine.model_config.max_model_len)
    except AttributeError:
        return None

"""The vLLM backend: a clear error without the extra; a real run when vLLM and a GPU are present."""

import importlib.util

import pytest

from data_prep.schema import DataError

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_extra_gives_a_clear_error(tiny_model_dir):
    from inference.reranker import ListwiseReranker

    with pytest.raises(DataError, match=r"dear-reranker\[vllm\]"):
        ListwiseReranker.from_pretrained(str(tiny_model_dir), backend="vllm")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_VLLM, reason="needs the vllm extra")
def test_vllm_serves_an_unmerged_adapter_and_ranks(tiny_model_dir, tmp_path):
    if not _has_gpu():
        pytest.skip("needs a CUDA GPU")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from data_prep.samples import load_noveleval_sample
    from inference.reranker import ListwiseReranker

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "adapter")
    requests, _ = load_noveleval_sample()
    rr = ListwiseReranker.from_pretrained(str(tmp_path / "adapter"), backend="vllm", dtype="bfloat16",
                                          max_new_tokens=40, batch_size=8)
    assert rr.backend.lora is not None  # served as a LoRA, not merged
    results = rr.rerank_batch(requests[:4])
    for res, req in zip(results, requests[:4], strict=True):
        assert sorted(res.docids) == sorted(c.docid for c in req.candidates)
        assert all(w.raw is not None for w in res.windows if w.end - w.start > 1)
    assert rr.backend.stats.generated_tokens > 0

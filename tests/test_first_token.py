"""First-token scoring: the id-token check, the exact model input, the order and scores it gives, batching,
`dear rerank --scoring first-token`, and the vLLM scorer's request/response handling (without vllm)."""

from __future__ import annotations

import json
import math
import subprocess
from types import SimpleNamespace

import pytest
from conftest import shared_path

from data_prep.prompts import answer_start, get_prompt_spec, model_input_text, render_prompt, training_record
from data_prep.readers import read_rankgpt_json, read_run, write_rankgpt_json
from data_prep.schema import DataError


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def dl19():
    return read_rankgpt_json(shared_path("trec-dl19", "retrieve_results_dl19_top100.json"))


@pytest.mark.parametrize("spec_name", ["dear-card", "rankgpt"])
def test_tiny_tokenizer_has_every_id_as_one_token_for_windows_up_to_100(tiny_tokenizer, spec_name):
    from inference.engine.first_token import IdTokenTable

    spec = get_prompt_spec(spec_name)
    table = IdTokenTable(tiny_tokenizer, spec)
    tokens = table.for_window(100)
    assert len(set(tokens)) == 100
    assert [tiny_tokenizer.decode([t]) for t in tokens[:20]] == [str(spec.id_base + i) for i in range(20)]


def test_ids_that_are_not_one_token_and_cot_specs_are_refused(tiny, tiny_tokenizer):
    from inference.engine.first_token import FirstTokenError, IdTokenTable
    from inference.reranker import ListwiseReranker

    with pytest.raises(FirstTokenError, match=r"id 101 is \['10', '1', '\]'\] with tokenizer .*at most 101 candidates"):
        IdTokenTable(tiny_tokenizer, get_prompt_spec("dear-card")).for_window(120)
    model, tok = tiny
    with pytest.raises(DataError, match="chain-of-thought.*use generation"):
        ListwiseReranker(model, tok, "dear-cot", scoring="first-token")
    with pytest.raises(FirstTokenError, match="--window"):  # refused at construction, before any work
        ListwiseReranker(model, tok, "dear-card", scoring="first-token", window=120, stride=60, top_k=200)
    with pytest.raises(ValueError, match="scoring must be one of"):
        ListwiseReranker(model, tok, "dear-card", scoring="logits")


def test_window_order_breaks_ties_by_first_stage_rank_and_log_probs_normalise():
    from inference.engine.first_token import id_log_probs, window_order

    assert window_order([0.5, 2.0, 0.5, -1.0], [7, 3, 2, 9]) == [1, 2, 0, 3]
    lp = id_log_probs([0.5, 2.0, 0.5, -1.0])
    assert sum(math.exp(x) for x in lp) == pytest.approx(1.0)
    assert lp[1] - lp[0] == pytest.approx(1.5)


@pytest.mark.parametrize("spec_name", ["dear-card", "rankgpt"])
def test_model_input_is_the_training_prefix_and_the_order_is_the_argsort_of_a_plain_forward(tiny, dl19, spec_name,
                                                                                           one_torch_thread):
    """The scored input is the prompt plus the answer start, tokenized exactly as the training example's prefix up
    to the first id; the order is the argsort of the logits a plain full forward gives at its last position."""
    import torch

    from inference.engine.first_token import HFFirstTokenScorer, IdTokenTable
    from inference.engine.types import BackendStats
    from inference.reranker import ListwiseReranker

    model, tok = tiny
    spec = get_prompt_spec(spec_name, truncate_length=60)
    req = dl19[0]
    inner = HFFirstTokenScorer(model, tok)
    seen = []

    class Recording:
        stats = BackendStats()

        def stream(self, pull, n):
            def rec(k):
                got = pull(k)
                seen.extend(got)
                return got
            yield from inner.stream(rec, n)

    rr = ListwiseReranker(model, tok, spec, window=8, stride=4, top_k=8, scoring="first-token", backend=Recording())
    (res,) = rr.rerank_batch([req])
    (sreq,) = seen
    passages = [c.passage() for c in req.candidates[:8]]
    prompt = render_prompt(spec, req.query, passages, tokenizer=tok)
    text = prompt.text if prompt.text is not None else model_input_text(prompt, tok)
    assert sreq.text == text + answer_start(spec)
    ids = tok(sreq.text, add_special_tokens=sreq.add_special_tokens)["input_ids"]
    # the training example of this window (any order): its tokens up to the first id are exactly the scored input
    rec = training_record(spec, prompt, [3, 1, 0, 2, 4, 5, 6, 7])
    if isinstance(rec["prompt"], str):
        full = tok(rec["prompt"] + rec["completion"])["input_ids"]
    else:
        full = tok.apply_chat_template(rec["prompt"] + rec["completion"], tokenize=True)
        full = full["input_ids"] if hasattr(full, "keys") else full
    table = IdTokenTable(tok, spec).for_window(8)
    assert full[: len(ids)] == ids and full[len(ids)] == table[3]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1, table].tolist()
    expected = sorted(range(8), key=lambda k: (-logits[k], k))
    (window,) = res.windows
    assert list(window.order) == expected and window.source == "first-token" and window.generated_tokens == 0
    assert window.logprobs == pytest.approx([x - math.log(sum(math.exp(y) for y in logits)) for x in logits],
                                            abs=1e-5)
    assert list(res.docids[:8]) == [req.candidates[k].docid for k in expected]
    assert window.raw == " > ".join(f"[{k + spec.id_base}]" for k in expected)


def test_one_window_queries_score_with_probabilities_and_many_windows_stay_monotone(tiny, dl19, one_torch_thread):
    from inference.reranker import ListwiseReranker

    model, tok = tiny
    spec = get_prompt_spec("dear-card", truncate_length=40)
    rr = ListwiseReranker(model, tok, spec, window=10, stride=5, top_k=10, scoring="first-token")
    (res,) = rr.rerank_batch([dl19[1]])
    (w,) = res.windows
    probs = {w.docids[k]: math.exp(lp) for k, lp in enumerate(w.logprobs)}
    assert [res.scores[i] for i in range(10)] == pytest.approx([probs[d] for d in res.docids[:10]], abs=1e-4)
    assert sum(res.scores[:10]) == pytest.approx(1.0, abs=1e-3)
    assert res.scores[10:13] == (-1.0, -2.0, -3.0)
    assert all(a > b for a, b in zip(res.scores, res.scores[1:], strict=False))
    rr = ListwiseReranker(model, tok, spec, window=10, stride=5, top_k=30, scoring="first-token")
    (res,) = rr.rerank_batch([dl19[1]])
    assert len(res.windows) == 5 and all(w.logprobs is not None for w in res.windows)
    assert all(a > b for a, b in zip(res.scores, res.scores[1:], strict=False))
    assert sorted(res.docids) == sorted(c.docid for c in dl19[1].candidates)


def test_batched_forward_equals_one_window_at_a_time(tiny, dl19, one_torch_thread):
    """Windows of different queries in one right-padded forward: same orders, same log-probs (float rounding)."""
    from inference.reranker import ListwiseReranker

    model, tok = tiny
    spec = get_prompt_spec("dear-card", truncate_length=80)
    reqs = dl19[:4]
    one = ListwiseReranker(model, tok, spec, window=6, stride=3, top_k=12, scoring="first-token", batch_size=1)
    many = ListwiseReranker(model, tok, spec, window=6, stride=3, top_k=12, scoring="first-token", batch_size=4)
    many.backend.max_padding, many.backend.batch_forward = 1.0, True  # every offered window in one forward
    assert one.backend._batches() is False  # on a CPU the default is one window per forward (measured faster)
    a, b = one.rerank_batch(reqs), many.rerank_batch(reqs)
    assert many.backend.forwards < one.backend.forwards == sum(len(r.windows) for r in a)
    assert many.backend.padded_tokens > 0
    for x, y in zip(a, b, strict=True):
        assert x.docids == y.docids
        for wx, wy in zip(x.windows, y.windows, strict=True):
            assert wx.order == wy.order
            assert wx.logprobs == pytest.approx(wy.logprobs, abs=1e-4)


def test_dear_rerank_scoring_first_token_cli(tiny_model_dir, dl19, tmp_path, dear_cmd, subprocess_env):
    path = tmp_path / "two.json"
    write_rankgpt_json(path, dl19[:2])
    out, jl = tmp_path / "run.trec", tmp_path / "run.jsonl"
    cmd = dear_cmd + ["rerank", "--model", str(tiny_model_dir), "--input", str(path), "--out", str(out),
                      "--jsonl", str(jl), "--top-k", "20", "--window", "20", "--scoring", "first-token",
                      "--qrels", str(shared_path("trec-dl19", "qrels.dl19-passage.txt")), "--no-progress"]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = read_run(out)
    records = {json.loads(line)["qid"]: json.loads(line) for line in jl.read_text().splitlines()}
    for r in dl19[:2]:
        docids = [d for d, _ in run[r.qid]]
        scores = [s for _, s in run[r.qid]]
        assert sorted(docids) == sorted(c.docid for c in r.candidates)
        assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
        (w,) = records[r.qid]["windows"]
        assert w["source"] == "first-token" and len(w["logprobs"]) == 20
        probs = {w["docids"][k]: math.exp(lp) for k, lp in enumerate(w["logprobs"])}
        assert scores[:20] == pytest.approx([probs[d] for d in docids[:20]], abs=1e-4)
    summary = json.loads((tmp_path / "run.trec.summary.json").read_text())
    assert summary["generated_tokens"] == 0 and summary["backend"]["prefills"] == 2
    bad = subprocess.run(cmd[:-1] + ["--prompt", "dear-cot", "--overwrite", "--no-progress"], env=subprocess_env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "chain-of-thought" in bad.stderr


def test_vllm_scorer_requests_one_token_over_the_window_ids_and_reads_their_logprobs(tiny, dl19):
    """A stand-in engine answers like vLLM with processed log-probs (only the allowed ids, log-softmax over them),
    computed from the tiny model: the vLLM scorer then orders every window exactly like the HF scorer."""
    import torch

    from inference.engine.first_token import HFFirstTokenScorer, VLLMFirstTokenScorer
    from inference.reranker import ListwiseReranker

    model, tok = tiny
    calls = []

    class FakeLLM:
        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            outs = []
            for p, sp in zip(prompts, params, strict=True):
                calls.append(sp)
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([p["prompt_token_ids"]])).logits[0, -1]
                allowed = sp["allowed_token_ids"]
                lp = torch.log_softmax(logits[allowed], dim=-1).tolist()
                step = {t: SimpleNamespace(logprob=v) for t, v in zip(allowed, lp, strict=True)}
                outs.append(SimpleNamespace(outputs=[SimpleNamespace(logprobs=[step])]))
            return outs

    vb = SimpleNamespace(llm=FakeLLM(), tokenizer=tok, lora="the-adapter")
    scorer = VLLMFirstTokenScorer(vb, sampling_params=lambda **kw: kw)
    spec = get_prompt_spec("dear-card", truncate_length=40)
    common = dict(window=6, stride=3, top_k=12, scoring="first-token")
    a = ListwiseReranker(None, tok, spec, backend=scorer, **common).rerank_batch(dl19[:2])
    b = ListwiseReranker(model, tok, spec, backend=HFFirstTokenScorer(model, tok), **common).rerank_batch(dl19[:2])
    assert [r.docids for r in a] == [r.docids for r in b]
    assert all(c["max_tokens"] == 1 and c["temperature"] == 0.0 and c["logprobs"] == 6 for c in calls)
    assert scorer.missing == 0 and scorer.stats.prefills == len(calls) == 6  # 3 windows per query
    for x, y in zip(a, b, strict=True):
        for wx, wy in zip(x.windows, y.windows, strict=True):
            assert wx.logprobs == pytest.approx(wy.logprobs, abs=1e-4)


def test_agreement_script_compares_first_token_with_generation_on_the_generated_windows(tiny, dl19):
    """scripts/first_token_agreement.py re-scores each generated window (same candidates, same prompt order):
    against records whose generated orders are the first-token orders, tau and top-1 are 1; reversed, -1 and 0."""
    import importlib.util

    from conftest import REPO

    from inference.reranker import ListwiseReranker

    spec_ = importlib.util.spec_from_file_location("agreement", REPO / "scripts" / "first_token_agreement.py")
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    assert mod.kendall_tau([0, 1, 2], [0, 1, 2]) == 1.0 and mod.kendall_tau([0, 1, 2], [2, 1, 0]) == -1.0
    assert mod.kendall_tau([0, 1, 2, 3], [1, 0, 2, 3]) == pytest.approx(4 / 6)
    model, tok = tiny
    spec = get_prompt_spec("dear-card", truncate_length=40)
    ft = ListwiseReranker(model, tok, spec, window=5, stride=3, top_k=10, scoring="first-token")
    results = ft.rerank_batch(dl19[:2])
    same = [{"qid": r.qid, "windows": [w.to_json() for w in r.windows]} for r in results]
    reversed_ = [{"qid": r.qid, "windows": [dict(w.to_json(), order=list(w.order)[::-1]) for w in r.windows]}
                 for r in results]
    requests = {r.qid: r for r in dl19[:2]}

    def reranker_for(n):
        return ListwiseReranker(model, tok, spec, window=n, stride=n - 1, top_k=n, scoring="first-token")

    assert mod.window_agreement(reranker_for, requests, same) == {"windows": 6, "kendall_tau": 1.0,
                                                                   "top1_agreement": 1.0}
    assert mod.window_agreement(reranker_for, requests, reversed_) == {"windows": 6, "kendall_tau": -1.0,
                                                                       "top1_agreement": 0.0}

"""Text where it enters: unencodable text is refused by the domain types (and located by the readers), and
special-token text in a query, passage or title is tokenized as plain text, for every prompt spec, both scoring
modes, and the training records (properties over generated bad text: tests/_bad_text.py)."""

from __future__ import annotations

import json

import pytest
from _bad_text import (
    FORGED_TURN,
    LLAMA3_SPECIALS,
    control_text,
    special_text,
    unencodable_text,
    valid_odd_text,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_prep.prompt_tokens import model_input_ids, prompt_has_special_text, record_token_ids
from data_prep.prompts import PROMPT_SPECS, get_prompt_spec, model_input_text, render_prompt, training_record
from data_prep.schema import Candidate, DataError, Query, RankingExample, RerankRequest

FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                database=None)
SPECS = sorted(PROMPT_SPECS)  # dear-card, dear-cot, rankgpt


# -- unencodable text: refused by the types, located by the readers -------------------------------------------


@FAST
@given(bad=unencodable_text, where=st.sampled_from(["query", "qid", "docid", "text", "title"]))
def test_unencodable_text_is_refused_by_the_domain_types_naming_the_field(bad, where):
    def build():
        cand = Candidate(docid=bad if where == "docid" else "d1", text=bad if where == "text" else "ok",
                         title=bad if where == "title" else None)
        return RerankRequest(qid=bad if where == "qid" else "q1", query=bad if where == "query" else "ok",
                             candidates=(cand,))

    with pytest.raises(DataError) as err:
        build()
    assert err.value.reason == "unencodable_text" and err.value.field == where
    msg = str(err.value)
    assert "cannot be encoded as UTF-8" in msg and "surrogate" in msg and "fix:" in msg
    msg.encode("utf-8")  # the message itself can be printed and logged
    if where in ("text", "title"):
        assert "'d1'" in msg  # names the document


@FAST
@given(text=valid_odd_text)
def test_special_strings_and_control_characters_are_valid_text(text):
    c = Candidate(docid="d", text=text, title=text)
    assert RerankRequest(qid="q", query=text, candidates=(c,)).candidates[0].text == text
    assert Query(qid="q", text=text).text == text
    assert RankingExample(qid="q", query=text, candidates=(c,), ranking=("d",), reasoning=text).reasoning == text


def test_readers_name_the_file_line_and_record_of_unencodable_text(tmp_path):
    from data_prep.readers import read_corpus, read_rankgpt_json, read_topics

    hits = [{"qid": "q7", "docid": "d1", "content": "fine"}, {"qid": "q7", "docid": "d2", "content": "bad \ud800"}]
    (tmp_path / "in.json").write_text(json.dumps([{"query": "q", "hits": hits}]), encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_rankgpt_json(tmp_path / "in.json")
    assert str(err.value).startswith(f"{tmp_path / 'in.json'} (qid q7): text of document 'd2'")
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": "\\udc80"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:2: text of document 'b' holds text that cannot be encoded"):
        read_corpus(tmp_path / "corpus.jsonl")
    (tmp_path / "topics.jsonl").write_text('{"_id": "1", "text": "ok"}\n{"_id": "2", "text": "\\ud83d"}\n')
    with pytest.raises(DataError, match=r"topics.jsonl:2: query holds text that cannot be encoded"):
        read_topics(tmp_path / "topics.jsonl")


def test_teacher_records_with_unencodable_text_are_refused_with_their_line(tmp_path):
    from data_prep.formats import read_teacher

    rec = {"qid": "q1", "query": "q", "candidates": [{"docid": "a", "text": "x"}, {"docid": "b", "text": "\ud800"}],
           "ranking": ["a", "b"]}
    good = {**rec, "qid": "q2", "candidates": [{"docid": "a", "text": "x"}, {"docid": "b", "text": "y"}]}
    (tmp_path / "t.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(rec) + "\n", encoding="utf-8")
    _, stream = read_teacher(tmp_path / "t.jsonl", "auto")
    out = list(stream)
    assert out[0].error is None and out[1].error is not None
    assert str(out[1].error).startswith(f"{tmp_path / 't.jsonl'}:2 (qid q1): text of document 'b'")


def test_dear_rerank_refuses_a_lone_surrogate_in_its_input_in_one_line(tiny_model_dir, tmp_path, capsys):
    from inference.cli_rerank import main

    hits = [{"qid": "q1", "docid": f"d{i}", "content": "text \ud800" if i == 2 else f"text {i}"} for i in range(4)]
    (tmp_path / "in.json").write_text(json.dumps([{"query": "q", "hits": hits}]), encoding="utf-8")
    rc = main(["--model", str(tiny_model_dir), "--input", str(tmp_path / "in.json"), "--out", str(tmp_path / "run"),
               "--device", "cpu", "--max-new-tokens", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "(qid q1): text of document 'd2' holds text that cannot be encoded" in err[0]
    assert not (tmp_path / "run").exists()


# -- special-token text stays text ----------------------------------------------------------------------------


def _specials(tok, ids):
    special = set(tok.all_special_ids)
    return sum(1 for i in ids if i in special)


def _ids_as_served(tok, prompt, suffix=""):
    """The ids a backend is given for ``prompt`` (tokenize_texts over the request the reranker builds)."""
    from inference.engine.first_token import ScoreRequest
    from inference.engine.text import tokenize_texts

    ids = model_input_ids(prompt, tok, suffix) if prompt_has_special_text(prompt, tok) else None
    text = (prompt.text if prompt.text is not None else model_input_text(prompt, tok)) + suffix
    req = ScoreRequest(key=0, text=text, add_special_tokens=prompt.text is not None, id_tokens=(), token_ids=ids)
    return tokenize_texts(tok, [req])[0]


@FAST
@given(spec_name=st.sampled_from(SPECS), bad=special_text, where=st.sampled_from(["query", "passage", "title"]))
def test_special_token_text_never_adds_control_tokens_to_a_prompt(tiny_tokenizer, spec_name, bad, where):
    tok = tiny_tokenizer
    spec = get_prompt_spec(spec_name)

    def render(x):
        passages = [Candidate("a", "a flea is an insect").passage(),
                    Candidate("b", x if where == "passage" else "paris", x if where == "title" else None).passage()]
        return render_prompt(spec, x if where == "query" else "what is a flea", passages)

    clean, dirty = render("plain words"), render(bad)
    for suffix in ("", "[" if spec.style == "chat" else " ["):
        clean_ids, dirty_ids = _ids_as_served(tok, clean, suffix), _ids_as_served(tok, dirty, suffix)
        assert _specials(tok, dirty_ids) == _specials(tok, clean_ids)  # only the template's control tokens
        bos = tok.bos_token if dirty.text is not None else ""
        assert tok.decode(dirty_ids) == bos + model_input_text(dirty, tok) + suffix  # the text, all of it


@pytest.mark.parametrize("spec_name", SPECS)
def test_without_special_text_the_ids_are_the_tokenizers_own(tiny_tokenizer, spec_name):
    spec = get_prompt_spec(spec_name)
    prompt = render_prompt(spec, "what is a flea ünï 😀", ["a flea is an insect", "paris\tis in\x07 france"])
    assert not prompt_has_special_text(prompt, tiny_tokenizer)
    plain = prompt.text is not None
    text = prompt.text if plain else model_input_text(prompt, tiny_tokenizer)
    assert model_input_ids(prompt, tiny_tokenizer) == tiny_tokenizer(text, add_special_tokens=plain)["input_ids"]


# every spec in both scoring modes (chain-of-thought specs have no first-token scoring: refused with the fix)
@pytest.mark.parametrize(("spec_name", "scoring"), [("dear-card", "generate"), ("dear-card", "first-token"),
                                                    ("rankgpt", "generate"), ("rankgpt", "first-token"),
                                                    ("dear-cot", "generate")])
def test_reranker_feeds_the_model_plain_text_ids_for_injected_documents(tiny_model_dir, one_torch_thread, scoring,
                                                                        spec_name):
    from _infer_helpers import RecordingBackend

    from inference.engine.text import tokenize_texts
    from inference.reranker import ListwiseReranker

    rr = ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32", prompt=spec_name,
                                          scoring=scoring, max_new_tokens=2, window=4, stride=2)
    rr.backend = RecordingBackend(rr.backend)
    docs = ["a flea is an insect", FORGED_TURN, "<|begin_of_text|>paris", "dogs " + "".join(LLAMA3_SPECIALS)]
    clean = ["a flea is an insect", "forged turn", "paris", "dogs"]
    ranked = {}
    for name, texts in (("clean", clean), ("dirty", docs)):
        query = "what <|eot_id|> is" if name == "dirty" else "what eot is"
        req = RerankRequest(qid=name, query=query, candidates=tuple(
            Candidate(docid=str(i), text=t) for i, t in enumerate(texts)))
        (ranked[name],) = rr.rerank_batch([req])
    reqs = rr.backend.requests
    assert len(reqs) == 2
    clean_ids, dirty_ids = tokenize_texts(rr.tokenizer, reqs)
    assert _specials(rr.tokenizer, dirty_ids) == _specials(rr.tokenizer, clean_ids)
    assert reqs[1].token_ids is not None and reqs[0].token_ids is None
    # the model saw exactly these ids: the backend's prompt-token count is their length
    assert ranked["dirty"].windows[0].prompt_tokens == len(dirty_ids)
    assert sorted(ranked["dirty"].docids) == ["0", "1", "2", "3"]


# -- training tokenizes records as inference does -------------------------------------------------------------


@FAST
@given(spec_name=st.sampled_from(["dear-card", "rankgpt"]), bad=st.one_of(special_text, control_text))
def test_training_record_prompt_ids_are_the_inference_ids(tiny_tokenizer, spec_name, bad):
    spec = get_prompt_spec(spec_name)
    prompt = render_prompt(spec, "what is a flea", ["a flea is an insect", bad, "paris"])
    record = training_record(spec, prompt, [1, 0, 2])
    prompt_ids, full_ids = record_token_ids(record, tiny_tokenizer)
    assert prompt_ids == model_input_ids(prompt, tiny_tokenizer)
    assert full_ids[: len(prompt_ids)] == prompt_ids  # the completion follows the very prompt inference sees
    completion = tiny_tokenizer.decode(full_ids[len(prompt_ids):])
    answer = record["completion"] if isinstance(record["completion"], str) else record["completion"][0]["content"]
    assert completion.startswith(answer) and completion.endswith("<|eot_id|>")


def test_sft_trains_on_injected_passages_with_the_inference_ids(tiny_model_dir, tiny_tokenizer, tmp_path):
    from data_prep.prompts import save_prompt_spec
    from tests._train_helpers import tiny_args
    from tests.test_train_sft import _train

    spec = get_prompt_spec("dear-card")
    prep = tmp_path / "prep"
    prep.mkdir()
    prompts, records = [], []
    for i in range(4):
        docs = [f"passage {i} about fleas", FORGED_TURN if i % 2 else "plain", "<|begin_of_text|>x"]
        prompt = render_prompt(spec, f"query {i} <|eot_id|>", docs)
        prompts.append(prompt)
        records.append(training_record(spec, prompt, [2, 0, 1]))
    (prep / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    save_prompt_spec(prep, spec)
    trainer = _train(tiny_args(tiny_model_dir, prep, tmp_path / "out", "--max_steps", "1", "--eval_strategy", "no"))
    ds = trainer.train_dataset
    for i, prompt in enumerate(prompts):
        want = model_input_ids(prompt, tiny_tokenizer)
        batch = trainer.data_collator([ds[i]])
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        assert ids[: len(want)] == want and _specials(tiny_tokenizer, want) == 1  # BOS only, as at inference
        kept = [t for t in labels if t != -100]
        assert tiny_tokenizer.decode(kept) == records[i]["completion"] + "<|eot_id|>"


@FAST
@given(bad=special_text)
def test_pointwise_pairs_keep_special_token_text_plain(tiny_tokenizer, bad):
    from data_prep.pointwise_format import PairFormat, encode_pair

    fmt = PairFormat()
    clean = encode_pair(tiny_tokenizer, "what is a flea", "an insect", fmt)
    dirty = encode_pair(tiny_tokenizer, "what is a flea " + bad, bad + " an insect", fmt)
    assert _specials(tiny_tokenizer, dirty) == _specials(tiny_tokenizer, clean) == 2  # the two BOS of the layout

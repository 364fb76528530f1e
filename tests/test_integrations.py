"""The in-process integrations (rerankers, LangChain, LlamaIndex, Haystack, PyTerrier) against the real libraries:
each returns exactly the order `ListwiseReranker.rerank_batch` (what `dear rerank` runs) gives, keeps the
framework's objects and metadata, writes the score where the framework reads it, and refuses bad input with the
framework's usual error type and a message naming the field and the fix.

The tiny model's generations are random text (the repaired order is the input order), so the order checks use
first-token scoring, whose order is the model's own and not the identity (asserted)."""

from __future__ import annotations

import os
import time

import pytest

from data_prep.schema import DataError
from inference.integrations.ranking import InputTypeError, text_request
from inference.reranker import ListwiseReranker
from inference.serve.scores import result_relevance

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUERY = "how long do fleas live"
TEXTS = ["Paris is the capital of France.", "A flea can live up to a year.", "Fleas are wingless insects.",
         "The Eiffel tower is in Paris.", "Cats eat fish.", "Dogs bark at night."]


@pytest.fixture(scope="module", params=["one-window", "windows"])
def reranker(request, tiny_model_dir):
    """First-token scoring: one window (scores are the model's probabilities) or windows of 4, stride 2 (scores
    are rank-derived)."""
    window = {"one-window": {}, "windows": {"window": 4, "stride": 2}}[request.param]
    return ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32",
                                            scoring="first-token", **window)


def expected(rr, texts=TEXTS, query=QUERY):
    """(order, relevance scores) as the reranker and `dear serve` give them for the query and texts."""
    (result,) = rr.rerank_batch([text_request(query, texts)])
    order = [int(d) for d in result.docids]
    assert order != list(range(len(texts)))  # the check below could not tell an adapter that ranks nothing
    return order, result_relevance(result, probabilities=True)


# -- rerankers ---------------------------------------------------------------------------------------

def test_rerankers_ranker_gives_the_reranker_order_with_ids_metadata_and_scores(reranker):
    pytest.importorskip("rerankers")
    from rerankers.documents import Document
    from rerankers.models.ranker import BaseRanker
    from rerankers.results import RankedResults

    from inference.integrations.rerankers import DearRanker

    order, scores = expected(reranker)
    ranker = DearRanker(reranker)
    assert isinstance(ranker, BaseRanker)
    ids = [f"d{i}" for i in range(len(TEXTS))]
    out = ranker.rank(QUERY, TEXTS, doc_ids=ids, metadata=[{"n": i} for i in range(len(TEXTS))])
    assert isinstance(out, RankedResults) and out.has_scores and out.query == QUERY
    assert [r.doc_id for r in out] == [ids[i] for i in order]
    assert [r.text for r in out] == [TEXTS[i] for i in order]
    assert [r.document.metadata["n"] for r in out] == order
    assert [r.rank for r in out] == list(range(1, len(TEXTS) + 1))
    assert [r.score for r in out] == pytest.approx(scores)
    assert [r.doc_id for r in out.top_k(2)] == [ids[i] for i in order[:2]]  # the library sorts by score
    docs = [Document(t, doc_id=f"x{i}", metadata={"src": "s"}) for i, t in enumerate(TEXTS)]
    kept = ranker.rank(QUERY, docs)
    assert [r.document for r in kept] == [docs[i] for i in order]  # the caller's own objects
    assert [r.doc_id for r in ranker.rank(QUERY, TEXTS)] == order  # default ids: positions


def test_rerankers_ranker_refuses_bad_input_naming_the_field(reranker):
    pytest.importorskip("rerankers")
    from inference.integrations.rerankers import DearRanker

    ranker = DearRanker(reranker)
    with pytest.raises(ValueError, match=r"^query: must not be empty -- fix: "):
        ranker.rank("  ", TEXTS)
    with pytest.raises(TypeError, match=r"^docs\[1\]: expected a string or a rerankers Document, got int -- fix: "):
        ranker.rank(QUERY, ["a", 3])
    with pytest.raises(TypeError, match=r"^query: expected a string, got None \(missing\)"):
        ranker.rank(None, TEXTS)
    with pytest.raises(ValueError, match=r"^doc_ids: 1 given for 2 docs"):
        ranker.rank(QUERY, ["a", "b"], doc_ids=["x"])
    with pytest.raises(NotImplementedError, match="call rank"):
        ranker.score(QUERY, "a")
    assert ranker.rank(QUERY, []).results == []


# -- LangChain ---------------------------------------------------------------------------------------

def test_langchain_compressor_keeps_documents_and_writes_relevance_score(reranker):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import BaseDocumentCompressor, Document

    from inference.integrations.langchain import DearRerank

    order, scores = expected(reranker)
    docs = [Document(page_content=t, metadata={"n": i, "nested": {"a": [i]}}, id=f"id{i}") for i, t in enumerate(TEXTS)]
    compressor = DearRerank(reranker=reranker)
    assert isinstance(compressor, BaseDocumentCompressor)
    out = compressor.compress_documents(docs, QUERY)
    assert [d.id for d in out] == [f"id{i}" for i in order]
    assert [d.page_content for d in out] == [TEXTS[i] for i in order]
    assert [d.metadata["n"] for d in out] == order
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(scores)
    assert all("relevance_score" not in d.metadata for d in docs)  # the caller's documents are untouched
    out[0].metadata["nested"]["a"].append("x")
    assert docs[order[0]].metadata["nested"]["a"] == [order[0]]  # metadata copied deeply, as CohereRerank does
    top = DearRerank(reranker=reranker, top_n=2).compress_documents(docs, QUERY)
    assert [d.id for d in top] == [f"id{i}" for i in order[:2]]


def test_langchain_compressor_refuses_bad_input_naming_the_field(reranker):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document
    from pydantic import ValidationError

    from inference.integrations.langchain import DearRerank

    compressor = DearRerank(reranker=reranker)
    with pytest.raises(ValueError, match=r"^query: must not be empty -- fix: pass the query text"):
        compressor.compress_documents([Document(page_content="a")], " ")
    with pytest.raises(TypeError, match=r"^documents\[1\]: expected a langchain_core Document, got str -- fix: wrap"):
        compressor.compress_documents([Document(page_content="a"), "b"], QUERY)
    with pytest.raises(ValidationError, match="top_n"):
        DearRerank(reranker=reranker, top_n=0)
    with pytest.raises(TypeError, match=r"^reranker: expected a ListwiseReranker, a RankingOptions or a model path, got int"):
        DearRerank(reranker=3)
    assert compressor.compress_documents([], QUERY) == []


# -- LlamaIndex --------------------------------------------------------------------------------------

def test_llamaindex_postprocessor_keeps_nodes_and_sets_node_scores(reranker):
    pytest.importorskip("llama_index.core")
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

    from inference.integrations.llamaindex import DearRerank

    order, scores = expected(reranker)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata={"n": i}), score=10.0 - i)
             for i, t in enumerate(TEXTS)]
    post = DearRerank(reranker=reranker, metadata_mode=MetadataMode.NONE, keep_retrieval_score=True)
    assert isinstance(post, BaseNodePostprocessor)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node for n in out] == [nodes[i].node for i in order]  # the same node objects
    assert [n.node.node_id for n in out] == [f"n{i}" for i in order]
    assert [n.score for n in out] == pytest.approx(scores)
    assert [n.node.metadata["retrieval_score"] for n in out] == [10.0 - i for i in order]
    top = DearRerank(reranker=reranker, top_n=3, metadata_mode=MetadataMode.NONE).postprocess_nodes(
        nodes, query_bundle=QueryBundle(QUERY))
    assert [n.node.node_id for n in top] == [f"n{i}" for i in order[:3]]
    # the default reads what the embedder reads: text plus metadata, as LlamaIndex's own rerankers do
    with_meta = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    meta_order, _ = expected(reranker, with_meta)
    assert [n.node.node_id for n in DearRerank(reranker=reranker).postprocess_nodes(nodes, query_str=QUERY)] == [
        f"n{i}" for i in meta_order]


def test_llamaindex_postprocessor_refuses_bad_input_naming_the_field(reranker):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode
    from pydantic import ValidationError

    from inference.integrations.llamaindex import DearRerank

    post = DearRerank(reranker=reranker)
    nodes = [NodeWithScore(node=TextNode(text="a"))]
    with pytest.raises(ValueError, match=r"^query_bundle: missing -- fix: "):
        post.postprocess_nodes(nodes)
    with pytest.raises(ValueError, match=r"^query_str: must not be empty -- fix: "):
        post.postprocess_nodes(nodes, query_str="")
    with pytest.raises(TypeError, match=r"^nodes\[0\]: expected a NodeWithScore, got TextNode -- fix: "):
        post.postprocess_nodes([TextNode(text="a")], query_str=QUERY)
    with pytest.raises(ValidationError, match="top_n"):
        DearRerank(reranker=reranker, top_n=-1)
    assert post.postprocess_nodes([], query_str=QUERY) == []


# -- Haystack ----------------------------------------------------------------------------------------

def test_haystack_ranker_keeps_documents_and_sets_scores(reranker):
    pytest.importorskip("haystack")
    from haystack import Document, Pipeline

    from inference.integrations.haystack import DearRanker

    order, scores = expected(reranker)
    docs = [Document(content=t, meta={"n": i}) for i, t in enumerate(TEXTS)]
    out = DearRanker(reranker).run(query=QUERY, documents=docs)["documents"]
    assert [d.id for d in out] == [docs[i].id for i in order]
    assert [d.meta["n"] for d in out] == order
    assert [d.score for d in out] == pytest.approx(scores)
    assert all(d.score is None for d in docs)  # copies, as Haystack's own rankers return
    ranker = DearRanker(reranker, top_k=4)
    assert [d.id for d in ranker.run(query=QUERY, documents=docs)["documents"]] == [docs[i].id for i in order[:4]]
    assert [d.id for d in ranker.run(query=QUERY, documents=docs, top_k=2)["documents"]] == [
        docs[i].id for i in order[:2]]
    pipe = Pipeline()  # as a pipeline component: inputs and outputs declared as Haystack expects
    pipe.add_component("ranker", DearRanker(reranker, top_k=3))
    got = pipe.run({"ranker": {"query": QUERY, "documents": docs}})["ranker"]["documents"]
    assert [d.id for d in got] == [docs[i].id for i in order[:3]]


def test_haystack_ranker_loads_a_model_path_in_warm_up(tiny_model_dir):
    pytest.importorskip("haystack")
    from haystack import Document

    from inference.integrations.haystack import DearRanker

    ranker = DearRanker(str(tiny_model_dir), top_k=2, device="cpu", dtype="float32", scoring="first-token")
    assert ranker.reranker is None  # nothing loads at construction: a pipeline calls warm_up
    docs = [Document(content=t) for t in TEXTS]
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    order, _ = expected(ranker.reranker)
    assert [d.id for d in out] == [docs[i].id for i in order[:2]]


def test_haystack_ranker_saves_and_loads_with_its_pipeline(tiny_model_dir, reranker):
    """A pipeline saved as YAML (Pipeline.dumps, what Hayhooks serves) loads back to the same ranker."""
    pytest.importorskip("haystack")
    from haystack import Document, Pipeline
    from haystack.core.errors import SerializationError

    from inference.integrations.haystack import DearRanker
    from inference.ranking.options import RankingOptions

    ranker = DearRanker(str(tiny_model_dir), top_k=2, device="cpu", dtype="float32", scoring="first-token")
    assert ranker.to_dict() == {"type": "inference.integrations.haystack.DearRanker", "init_parameters": {
        "model": str(tiny_model_dir), "top_k": 2, "scoring": "first-token", "dtype": "float32", "device": "cpu"}}
    opts = RankingOptions(model=str(tiny_model_dir), window=4, stride=2, device="cpu")
    assert DearRanker.from_options(opts).to_dict()["init_parameters"] == {
        "model": str(tiny_model_dir), "top_k": None, "window": 4, "stride": 2, "device": "cpu"}
    pipe = Pipeline()
    pipe.add_component("ranker", ranker)
    loaded = Pipeline.loads(pipe.dumps(), allowed_modules=["inference.integrations.haystack"])
    twin = loaded.get_component("ranker")
    assert isinstance(twin, DearRanker) and twin.reranker is None and twin.options == ranker.options
    docs = [Document(content=t) for t in TEXTS]
    got = loaded.run({"ranker": {"query": QUERY, "documents": docs}})["ranker"]["documents"]
    assert [d.id for d in got] == [d.id for d in ranker.run(query=QUERY, documents=docs)["documents"]]
    with pytest.raises(SerializationError, match="loaded reranker cannot be saved .* -- fix: build it from a"):
        DearRanker(reranker).to_dict()


def test_haystack_ranker_refuses_bad_input_naming_the_field(reranker):
    pytest.importorskip("haystack")
    from haystack import Document

    from inference.integrations.haystack import DearRanker

    ranker = DearRanker(reranker)
    with pytest.raises(ValueError, match=r"^query: must not be empty -- fix: "):
        ranker.run(query="", documents=[Document(content="a")])
    with pytest.raises(TypeError, match=r"^documents\[1\]\.content: expected a string, got None \(missing\) -- fix: "):
        ranker.run(query=QUERY, documents=[Document(content="a"), Document(content=None)])
    with pytest.raises(TypeError, match=r"^documents\[0\]: expected a haystack Document, got str"):
        ranker.run(query=QUERY, documents=["a"])
    with pytest.raises(ValueError, match=r"^top_k: must be >= 1, got 0 -- fix: "):
        ranker.run(query=QUERY, documents=[Document(content="a")], top_k=0)
    with pytest.raises(ValueError, match=r"^top_k: must be >= 1"):
        DearRanker(reranker, top_k=0)
    with pytest.raises(DataError, match="ranking options \\['window'\\] were given with a loaded reranker"):
        DearRanker(reranker, window=4)
    assert ranker.run(query=QUERY, documents=[])["documents"] == []


# -- shared ------------------------------------------------------------------------------------------

def test_calls_from_many_threads_take_turns_and_each_gets_its_own_ranking(reranker):
    pytest.importorskip("langchain_core")
    from concurrent.futures import ThreadPoolExecutor

    from langchain_core.documents import Document

    from inference.integrations.langchain import DearRerank

    queries = [QUERY, "where is the eiffel tower", "what do cats eat", "do dogs bark"]
    want = [[TEXTS[i] for i in expected(reranker, query=q)[0]] for q in queries]
    compressor = DearRerank(reranker=reranker)
    docs = [Document(page_content=t) for t in TEXTS]
    inside, most = [0], [0]
    batch = reranker.rerank_batch

    def watched(requests):  # how many calls are inside the model at once
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.05)
            return batch(requests)
        finally:
            inside[0] -= 1

    reranker.rerank_batch = watched
    try:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda q: [d.page_content for d in compressor.compress_documents(docs, q)],
                                queries * 2))
    finally:
        del reranker.rerank_batch
    assert got == want * 2
    assert most[0] == 1  # one model, one call at a time


def test_input_type_error_is_a_type_error_naming_field_and_fix():
    err = InputTypeError("documents[3]", "a string", 5, "pass text")
    assert isinstance(err, TypeError) and str(err) == "documents[3]: expected a string, got int -- fix: pass text"

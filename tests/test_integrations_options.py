"""Every adapter takes a ``RankingOptions`` (issue 23 on issue 19's options object): a strategy other than sliding
reaches the reranker (the adapter's order equals ``ListwiseReranker`` built from the same options), and a bad
option is refused by the options' one ``check()`` before any model loads, as the framework's usual error type
naming the field."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest

from data_prep.schema import DataError
from inference.integrations.ranking import text_request
from inference.ranking.options import RankingOptions
from inference.reranker import ListwiseReranker

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUERY = "how long do fleas live"
TEXTS = ["Paris is the capital of France.", "A flea can live up to a year.", "Fleas are wingless insects.",
         "The Eiffel tower is in Paris.", "Cats eat fish.", "Dogs bark at night.", "Fleas jump far.",
         "Rome is in Italy."]
STRATEGIES = {"tdpart": {"strategy": "tdpart", "window": 4, "depth": 2},
              "setwise": {"strategy": "setwise", "set_size": 3, "depth": 3}}


@pytest.fixture(scope="module", params=sorted(STRATEGIES))
def options(request, tiny_model_dir):
    return RankingOptions(model=str(tiny_model_dir), scoring="first-token", dtype="float32", device="cpu",
                          **STRATEGIES[request.param])


def direct_order(opts: RankingOptions, texts=TEXTS) -> list[int]:
    """The order ``ListwiseReranker`` built from ``opts`` gives (no adapter involved)."""
    rr = ListwiseReranker.from_pretrained(opts.model, device_map=None, dtype="float32", **opts.reranker_kwargs())
    (result,) = rr.rerank_batch([text_request(QUERY, texts)])
    return [int(d) for d in result.docids]


@pytest.fixture(scope="module")
def want(options):
    order = direct_order(options)
    # the strategy decides the order here: had an adapter dropped it (sliding), the check below would see it
    assert order != direct_order(replace(options, strategy="sliding", window=4, stride=2))
    return order


def _uses(reranker, options):
    assert reranker.strategy.name == options.strategy


def test_pyterrier_transformer_from_options(options, want):
    pytest.importorskip("pyterrier")
    import pandas as pd

    from inference.integrations.pyterrier import DearTransformer

    dear = DearTransformer.from_options(options)
    _uses(dear.reranker, options)
    frame = pd.DataFrame({"qid": "1", "query": QUERY, "docno": [str(i) for i in range(len(TEXTS))], "text": TEXTS,
                          "rank": range(len(TEXTS))})
    assert [int(d) for d in dear(frame)["docno"]] == want


def test_rerankers_ranker_from_options(options, want):
    pytest.importorskip("rerankers")
    from inference.integrations.rerankers import DearRanker

    ranker = DearRanker.from_options(options)
    _uses(ranker.reranker, options)
    assert [r.document.doc_id for r in ranker.rank(QUERY, TEXTS).results] == want


def test_langchain_compressor_from_options(options, want):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from inference.integrations.langchain import DearRerank

    for compressor in (DearRerank.from_options(options), DearRerank(reranker=options)):
        _uses(compressor.reranker, options)
        docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(TEXTS)]
        assert [d.metadata["i"] for d in compressor.compress_documents(docs, QUERY)] == want


def test_llamaindex_postprocessor_from_options(options, want):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

    from inference.integrations.llamaindex import DearRerank

    post = DearRerank.from_options(options, metadata_mode=MetadataMode.NONE)
    _uses(post.reranker, options)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(TEXTS)]
    assert [int(n.node.node_id) for n in post.postprocess_nodes(nodes, query_str=QUERY)] == want


def test_haystack_ranker_from_options_loads_in_warm_up(options, want):
    pytest.importorskip("haystack")
    from haystack import Document

    from inference.integrations.haystack import DearRanker

    ranker = DearRanker.from_options(options)
    assert ranker.reranker is None  # checked now, loaded in warm_up
    docs = [Document(content=t, id=str(i)) for i, t in enumerate(TEXTS)]
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    _uses(ranker.reranker, options)
    assert [int(d.id) for d in out] == want


def test_a_model_path_with_ranking_fields_is_the_same_as_the_options(options, want):
    pytest.importorskip("rerankers")
    from inference.integrations.rerankers import DearRanker

    fields = {**STRATEGIES[options.strategy], "scoring": "first-token", "dtype": "float32", "device": "cpu"}
    ranker = DearRanker(options.model, **fields)
    assert [r.document.doc_id for r in ranker.rank(QUERY, TEXTS).results] == want


def test_mcp_server_from_options(options, want):
    pytest.importorskip("mcp")
    from inference.integrations.mcp_server import McpOptions, build_server

    mcp_opts = McpOptions(**{f: getattr(options, f) for f in options.__dataclass_fields__})
    server = build_server(mcp_opts)
    out = asyncio.run(server.call_tool("rerank", {"query": QUERY, "documents": TEXTS}))
    assert not out.is_error
    assert [r["index"] for r in out.structured_content["results"]] == want


# -- bad options: the framework's error type, the field named, before any model loads -------------------

BAD = [({"window": 1}, r"window"), ({"top_k": 1}, r"^top_k: must be >= 2"), ({"set_size": 1, "strategy": "setwise"},
       r"set_size|set size"), ({"temperature": 0.0, "sample": True}, r"^temperature: must be > 0")]


@pytest.fixture
def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded for options that can never work")

    monkeypatch.setattr(ListwiseReranker, "from_pretrained", refuse)


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_bad_options_are_refused_by_every_adapter_before_loading(bad, message, tiny_model_dir, no_model_loads):
    opts = RankingOptions(model=str(tiny_model_dir), **bad)
    builders = []
    if _has("pyterrier"):
        from inference.integrations.pyterrier import DearTransformer

        builders += [lambda: DearTransformer.from_options(opts), lambda: DearTransformer(opts.model, **bad)]
    if _has("rerankers"):
        from inference.integrations.rerankers import DearRanker

        builders += [lambda: DearRanker.from_options(opts), lambda: DearRanker(opts.model, **bad)]
    if _has("haystack"):
        from inference.integrations.haystack import DearRanker as HaystackRanker

        builders.append(lambda: HaystackRanker.from_options(opts))
        if "top_k" not in bad:  # Haystack's own top_k is the documents returned; the depth goes in the options
            builders.append(lambda: HaystackRanker(opts.model, **bad))
    if _has("mcp"):
        from inference.integrations.mcp_server import McpOptions, build_server

        builders += [lambda: build_server(McpOptions(model=opts.model, **bad))]
    assert builders
    for build in builders:
        with pytest.raises(DataError, match=message) as err:  # a ValueError, as these frameworks raise
            build()
        assert isinstance(err.value, ValueError) and " -- fix: " in str(err.value)
    for module in ("langchain", "llamaindex"):  # pydantic models: their ValidationError carries our message
        if not _has({"langchain": "langchain_core", "llamaindex": "llama_index.core"}[module]):
            continue
        cls = __import__(f"inference.integrations.{module}", fromlist=["DearRerank"]).DearRerank
        for build in (lambda: cls.from_options(opts), lambda: cls(reranker=opts),  # noqa: B023
                      lambda: cls.from_pretrained(opts.model, **bad)):  # noqa: B023
            with pytest.raises(ValueError, match=message.lstrip("^")) as err:
                build()
            assert " -- fix: " in str(err.value)


def test_a_name_that_is_no_ranking_option_is_refused_naming_it(tiny_model_dir, no_model_loads):
    pytest.importorskip("rerankers")
    from inference.integrations.rerankers import DearRanker

    with pytest.raises(DataError, match=r"^device_map: not a ranking option -- fix: use RankingOptions' fields "
                                        r"\(.*device,"):
        DearRanker(str(tiny_model_dir), device_map=None)
    with pytest.raises(DataError, match=r"ranking options \['window'\] were given beside a RankingOptions"):
        DearRanker(RankingOptions(model=str(tiny_model_dir)), window=4)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None

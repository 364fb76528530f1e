"""`dear mcp` with the official MCP SDK's own client over stdio (the server spawned as `python -m dear_train.cli mcp`
with the tiny model, bounded in time): the `rerank` tool gives the reranker's order, scores and texts; bad input
is a tool error naming the field and the fix; bad options exit 2 with one line before any model loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from inference.integrations.ranking import text_request
from inference.reranker import ListwiseReranker
from inference.serve.scores import result_relevance

anyio = pytest.importorskip("anyio")
pytest.importorskip("mcp")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUERY = "how long do fleas live"
TEXTS = ["Paris is the capital of France.", "A flea can live up to a year.", "Fleas are wingless insects.",
         "The Eiffel tower is in Paris.", "Cats eat fish.", "Dogs bark at night."]
RANKING = ["--scoring", "first-token", "--window", "4", "--stride", "2"]


def _server(model_dir, env, *extra):
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=sys.executable, env=env,
                                 args=["-m", "dear_train.cli", "mcp", "--model", str(model_dir), "--device", "cpu",
                                       "--dtype", "float32", *RANKING, *extra])


def test_the_rerank_tool_over_stdio_gives_the_reranker_order(tiny_model_dir, subprocess_env):
    from mcp import Client

    rr = ListwiseReranker.from_pretrained(str(tiny_model_dir), device_map=None, dtype="float32",
                                          scoring="first-token", window=4, stride=2)
    (result,) = rr.rerank_batch([text_request(QUERY, TEXTS)])
    order = [int(d) for d in result.docids]
    assert order != list(range(len(TEXTS)))
    scores = result_relevance(result, probabilities=True)

    async def session():
        with anyio.fail_after(180):
            async with Client(_server(tiny_model_dir, subprocess_env, "--max-documents", "6"),
                              read_timeout_seconds=120) as client:
                tools = {t.name: t for t in (await client.list_tools()).tools}
                full = await client.call_tool("rerank", {"query": QUERY, "documents": TEXTS})
                top = await client.call_tool("rerank", {"query": QUERY, "documents": TEXTS, "top_n": 2})
                bad = {name: await client.call_tool("rerank", args) for name, args in {
                    "empty": {"query": "  ", "documents": TEXTS},
                    "type": {"query": QUERY, "documents": ["a", 3]},
                    "top_n": {"query": QUERY, "documents": TEXTS, "top_n": 0},
                    "many": {"query": QUERY, "documents": TEXTS + ["one more"]},
                }.items()}
                after = await client.call_tool("rerank", {"query": QUERY, "documents": TEXTS, "top_n": 1})
                return tools, full, top, bad, after

    tools, full, top, bad, after = anyio.run(session)
    assert set(tools) == {"rerank"}
    schema = tools["rerank"].input_schema
    assert schema["required"] == ["query", "documents"] and schema["properties"]["documents"]["items"] == {
        "type": "string"}
    assert not full.is_error
    results = full.structured_content["results"]
    assert [r["index"] for r in results] == order
    assert [r["text"] for r in results] == [TEXTS[i] for i in order]
    assert [r["score"] for r in results] == pytest.approx(scores)
    assert json.loads(full.content[0].text) == full.structured_content  # the same JSON as text, for any client
    assert [r["index"] for r in top.structured_content["results"]] == order[:2]
    assert all(b.is_error for b in bad.values())
    texts = {name: b.content[0].text for name, b in bad.items()}
    assert "query: must not be empty -- fix: pass the query text" in texts["empty"]
    assert "documents.1" in texts["type"] and "valid string" in texts["type"]  # the SDK's argument check
    assert "top_n" in texts["top_n"]
    assert "documents: 7 given; this server takes at most 6 -- fix: " in texts["many"]
    assert all("Traceback" not in t for t in texts.values())
    assert [r["index"] for r in after.structured_content["results"]] == order[:1]  # still serving after errors


def test_dear_mcp_refuses_bad_options_in_one_line(tiny_model_dir, subprocess_env, tmp_path):
    cases = {("--window", "1"): "window", ("--top-k", "1"): "--top-k: must be >= 2",
             ("--max-documents", "0"): "--max-documents: must be >= 1"}
    for extra, needle in cases.items():
        proc = subprocess.run([sys.executable, "-m", "dear_train.cli", "mcp", "--model", str(tiny_model_dir), *extra],
                              env=subprocess_env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("dear mcp: error:")]
        assert len(lines) == 1 and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    proc = subprocess.run([sys.executable, "-m", "dear_train.cli", "mcp", "--model", str(tmp_path / "nothing")],
                          env=subprocess_env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "dear mcp: error:" in proc.stderr
    assert proc.stdout == ""

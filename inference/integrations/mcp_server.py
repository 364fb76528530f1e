"""`dear mcp`: a ``rerank`` tool for agents, over stdio with the official MCP SDK, on the one reranker.

    dear mcp --model runs/listwise                  # or: python -m inference.integrations.mcp_server ...
    # an MCP client's server entry: {"command": "dear", "args": ["mcp", "--model", "/abs/path/runs/listwise"]}

The tool takes ``query``, ``documents`` (strings) and ``top_n`` and returns the documents best first as
``{"results": [{"index", "score", "text"}, ...]}`` (structured content, and the same JSON as text): ``index``
into ``documents``, ``score`` the relevance in [0, 1] `dear serve` reports. Bad input comes back as a tool error
(``is_error``) whose text names the field and the fix. The model loads before the server answers; the model and
ranking options are `dear rerank`'s. Needs the ``mcp`` extra (``pip install 'dear-reranker[mcp]'``).
"""

# No ``from __future__ import annotations``: the SDK reads the tool's annotations, which name classes local to
# ``build_server`` (pydantic and mcp are imported only when the server is built, so `--help` needs neither).
import contextlib
import sys
from dataclasses import dataclass
from typing import Annotated, Any

from data_prep.cli_options import OptionError, checked, flags_of, option, parse_options
from data_prep.cli_options import build_parser as build_options_parser
from data_prep.cli_run import CommandError, run_command
from data_prep.schema import DataError
from inference.ranking.options import RankingOptions

PROG = "dear mcp"


@dataclass(kw_only=True)
class McpOptions(RankingOptions):
    """The model and ranking options every ranking command shares (:class:`inference.ranking.options.
    RankingOptions`: the same names, defaults, help and checks as `dear rerank` and `dear serve`), and the tool's
    limit."""

    max_documents: int = option(100, help="documents per tool call (more: a tool error)", setting=None)

    def check(self) -> None:
        """Values that can never work, refused before the model loads."""
        super().check()
        if self.max_documents < 1:
            raise OptionError("max_documents", f"must be >= 1, got {self.max_documents}",
                              fix="use a positive number")



def build_server(reranker: Any, *, max_documents: int = 100, name: str = "dear") -> Any:
    """An ``MCPServer`` with the ``rerank`` tool over ``reranker`` (run it with ``.run("stdio")``): a loaded
    ``ListwiseReranker``, or a ``RankingOptions`` (checked, then loaded, before the server is built)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import BaseModel, Field

    from inference.integrations.ranking import load_reranker, rank_texts

    reranker = load_reranker(reranker)

    class RankedDocument(BaseModel):
        index: int = Field(description="position of the document in the request's documents")
        score: float = Field(description="relevance in [0, 1], decreasing down the list; compare within one call")
        text: str

    class RerankOutput(BaseModel):
        results: list[RankedDocument]

    server = MCPServer(name, instructions="Rerank documents for a query with a listwise LLM reranker: call "
                       "`rerank` with the query and the candidate texts; results come back best first.")

    @server.tool(name="rerank", description="Order documents by relevance to a query, best first. Returns each "
                 "document's index into `documents`, a relevance score in [0, 1] and its text.")
    def rerank(query: Annotated[str, Field(description="the question or search query")],
               documents: Annotated[list[str], Field(description="candidate texts, e.g. search results")],
               top_n: Annotated[int | None, Field(ge=1, description="return only the best n (default: all)")] = None,
               ) -> RerankOutput:
        if len(documents) > max_documents:
            raise ToolError(f"documents: {len(documents)} given; this server takes at most {max_documents} -- fix: "
                            "send fewer (e.g. the first-stage top results), or restart with a larger --max-documents")
        try:
            order = rank_texts(reranker, query, documents, top_n=top_n, text_field="documents[{}]".format)
        except (DataError, TypeError) as err:
            raise ToolError(str(err)) from None
        return RerankOutput(results=[RankedDocument(index=r.index, score=r.score, text=documents[r.index])
                                     for r in order])

    return server


def build_parser() -> Any:
    return build_options_parser(McpOptions, prog=PROG, description=__doc__)


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(McpOptions, argv, prog=PROG, parser=build_parser())
    return run_command(PROG, lambda: _run(opts), flags=flags_of(McpOptions))


def _run(opts: McpOptions) -> int:
    checked(opts, prog=PROG)
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError as err:
        raise CommandError(f"{err.name} is missing; install the mcp extra: pip install 'dear-reranker[mcp]'") \
            from None
    from inference.integrations.ranking import load_reranker
    from inference.models import check_loadable, describe_source

    check_loadable(describe_source(opts.model), opts.base_model)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the protocol's: nothing else may reach it
        reranker = load_reranker(opts)
    build_server(reranker, max_documents=opts.max_documents).run("stdio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

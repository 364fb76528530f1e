"""The data contract: schema types, prompt specs and rendering, ranking formatting and parsing."""

from data_prep.prompts import (
    PROMPT_SPEC_FILE,
    PROMPT_SPECS,
    Prompt,
    PromptSpec,
    get_prompt_spec,
    load_prompt_spec,
    model_input_text,
    render_prompt,
    save_prompt_spec,
    training_record,
    truncate_passage,
)
from data_prep.ranking import (
    FINAL_MARKER,
    REPAIR_KINDS,
    ParsedRanking,
    format_ranking,
    format_target,
    is_complete_ranking,
    parse_ranking,
)
from data_prep.schema import Candidate, DataError, Query, RankingExample, RerankRequest

__all__ = [
    "FINAL_MARKER", "REPAIR_KINDS", "PROMPT_SPEC_FILE", "PROMPT_SPECS",
    "Candidate", "DataError", "ParsedRanking", "Prompt", "PromptSpec", "Query", "RankingExample",
    "RerankRequest", "format_ranking", "format_target", "get_prompt_spec", "is_complete_ranking",
    "load_prompt_spec", "model_input_text", "parse_ranking", "render_prompt", "save_prompt_spec",
    "training_record", "truncate_passage",
]

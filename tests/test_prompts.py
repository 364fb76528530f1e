import pytest

from data_prep import (
    DataError,
    get_prompt_spec,
    load_prompt_spec,
    model_input_text,
    render_prompt,
    save_prompt_spec,
    training_record,
)

CARD_QUERY = "When did Thomas Edison invent the light bulb?"
CARD_DOCS = [
    "Lightning strike at Seoul National University",
    "Thomas Edison tried to invent a device for car but failed",
    "Coffee is good for diet",
    "KEPCO fixes light problems",
    "Thomas Edison invented the light bulb in 1879",
]
# The model card's five-document example, typed out byte for byte.
CARD_GOLDEN = """I will provide you with 5 passages, each indicated by a number identifier [].
Rank the passages based on their relevance to the search query: When did Thomas Edison invent the light bulb?.
[0] Lightning strike at Seoul National University
[1] Thomas Edison tried to invent a device for car but failed
[2] Coffee is good for diet
[3] KEPCO fixes light problems
[4] Thomas Edison invented the light bulb in 1879
Search Query: When did Thomas Edison invent the light bulb?.
Rank the passages above based on their relevance to the search query. Output the ranking as a list of numbers."""


def test_dear_card_prompt_is_the_model_cards_bytes():
    p = render_prompt(get_prompt_spec("dear-card"), CARD_QUERY, CARD_DOCS)
    assert p.text == CARD_GOLDEN


def test_dear_card_cuts_passages_at_300_characters():
    long = "x" * 299 + "yz" + " tail"
    p = render_prompt(get_prompt_spec("dear-card"), "q", [long])
    assert "[0] " + "x" * 299 + "y\n" in p.text and "z" not in p.text.split("\n")[2]


def test_rankgpt_is_multi_turn_with_one_based_ids_and_word_cut():
    spec = get_prompt_spec("rankgpt")
    words = " ".join(f"w{i}" for i in range(400))
    p = render_prompt(spec, "what is x", ["alpha beta", words])
    m = p.messages
    assert m[0] == {"role": "system", "content": "You are RankLLM, an assistant that ranks passages by relevance to the query."}
    assert m[1]["role"] == "user" and "2 passages" in m[1]["content"]
    assert m[3] == {"role": "user", "content": "[1] alpha beta"}
    assert m[4] == {"role": "assistant", "content": "Received passage [1]."}
    assert m[5]["content"].split()[1:] == [f"w{i}" for i in range(300)]
    assert m[-1]["role"] == "user" and m[-1]["content"].startswith("Search Query: what is x.")


def test_token_budget_shrinks_passages_evenly_not_the_list(tiny_tokenizer):
    spec = get_prompt_spec("dear-card")
    docs = [f"passage number {i} " * 40 for i in range(10)]
    full = render_prompt(spec, "query", docs, tokenizer=tiny_tokenizer)
    budget = len(tiny_tokenizer.encode(full.text)) // 2
    p = render_prompt(spec, "query", docs, tokenizer=tiny_tokenizer, max_tokens=budget)
    assert len(tiny_tokenizer.encode(p.text)) <= budget
    assert len(p.passages) == 10 and all(f"[{i}] " in p.text for i in range(10))
    lengths = [len(tiny_tokenizer.encode(x, add_special_tokens=False)) for x in p.passages]
    assert max(lengths) - min(lengths) <= 2  # one common cap, all passages equally long here
    assert p.text.endswith("Output the ranking as a list of numbers.")


def test_token_budget_too_small_is_a_clear_error(tiny_tokenizer):
    with pytest.raises(DataError, match="even with empty passages"):
        render_prompt(get_prompt_spec("dear-card"), "q", ["a", "b"], tokenizer=tiny_tokenizer, max_tokens=5)


def test_plain_prompt_tokens_are_a_prefix_of_prompt_plus_completion(tiny_tokenizer):
    spec = get_prompt_spec("dear-card")
    rec = training_record(spec, render_prompt(spec, CARD_QUERY, CARD_DOCS), [4, 1, 0, 3, 2])
    a = tiny_tokenizer(rec["prompt"])["input_ids"]
    b = tiny_tokenizer(rec["prompt"] + rec["completion"])["input_ids"]
    assert b[: len(a)] == a


def test_chat_record_and_inference_text_agree(tiny_tokenizer):
    spec = get_prompt_spec("rankgpt")
    prompt = render_prompt(spec, "q", ["a", "b"])
    rec = training_record(spec, prompt, [1, 0])
    assert rec["completion"] == [{"role": "assistant", "content": "[2] > [1]"}]
    text = model_input_text(prompt, tiny_tokenizer)
    assert text == tiny_tokenizer.apply_chat_template(rec["prompt"], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_prompt_spec_roundtrip(tmp_path):
    spec = get_prompt_spec("rankgpt", cot=True)
    save_prompt_spec(tmp_path, spec)
    assert load_prompt_spec(tmp_path) == spec
    assert load_prompt_spec(tmp_path / "missing") is None


def test_unknown_template_and_empty_query():
    with pytest.raises(DataError, match="unknown prompt template"):
        get_prompt_spec("nope")
    with pytest.raises(DataError, match="empty query"):
        render_prompt(get_prompt_spec("dear-card"), "  ", ["a"])


def test_resolve_prompt_spec_by_name_file_or_folder(tmp_path):
    from data_prep.prompts import PROMPT_SPEC_FILE, resolve_prompt_spec

    spec = get_prompt_spec("dear-card", truncate_length=100)
    save_prompt_spec(tmp_path, spec)
    assert resolve_prompt_spec("rankgpt") == get_prompt_spec("rankgpt")
    assert resolve_prompt_spec(str(tmp_path)) == spec
    assert resolve_prompt_spec(str(tmp_path / PROMPT_SPEC_FILE)) == spec
    with pytest.raises(DataError, match="no prompt_spec.json"):
        resolve_prompt_spec(str(tmp_path / "sub")) if (tmp_path / "sub").mkdir() is None else None
    with pytest.raises(DataError, match="unknown prompt template"):
        resolve_prompt_spec("not-a-template")

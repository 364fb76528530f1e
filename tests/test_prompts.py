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


# --- the whole contract of each spec, and the token budget's exact boundaries (mutation survivors) ---

RANKGPT_SYSTEM = "You are RankLLM, an assistant that ranks passages by relevance to the query."


def _rankgpt_messages(query: str, passages: list[str], last: str) -> list[dict[str, str]]:
    """RankGPT's multi-turn layout typed out by hand: a change here is a new spec version, not an edit."""
    n = len(passages)
    msgs = [
        {"role": "system", "content": RANKGPT_SYSTEM},
        {"role": "user", "content": f"I will provide you with {n} passages, each indicated by number identifier []. \n"
                                    f"Rank the passages based on their relevance to query: {query}."},
        {"role": "assistant", "content": "Okay, please provide the passages."},
    ]
    for i, p in enumerate(passages, start=1):
        msgs += [{"role": "user", "content": f"[{i}] {p}"}, {"role": "assistant", "content": f"Received passage [{i}]."}]
    msgs.append({"role": "user", "content": f"Search Query: {query}. \nRank the {n} passages above based on their "
                 "relevance to the search query. The passages should be listed in descending order using identifiers. "
                 "The most relevant passages should be listed first. The output format should be [] > [], e.g., "
                 "[1] > [2]. " + last})
    return msgs


@pytest.mark.parametrize(("spec_args", "last"), [
    ((("rankgpt",), {}), "Only response the ranking results, do not say any word or explain."),
    ((("rankgpt",), {"cot": True}), "First reason step by step inside <think></think>, then give only the ranking."),
    ((("dear-cot",), {}), "First reason step by step about how each passage relates to the query, citing passages by "
                          "their identifiers. Then finish with exactly one line of the form "
                          "\"### Final Reranking: [1] > [2] > ...\" that lists all 3 identifiers."),
])
def test_chat_specs_render_every_message_exactly(spec_args, last):
    args, kwargs = spec_args
    passages = ["alpha beta", "gamma", "delta epsilon"]
    p = render_prompt(get_prompt_spec(*args, **kwargs), "what is x", passages)
    assert list(p.messages) == _rankgpt_messages("what is x", passages, last)
    assert p.passages == tuple(passages) and p.text is None


def test_chat_specs_drop_an_empty_title_header_and_the_card_keeps_it():
    doc = "  Title: Content: the body  "
    assert render_prompt(get_prompt_spec("rankgpt"), "q", [doc]).passages == ("the body",)
    assert render_prompt(get_prompt_spec("dear-card"), "q", [doc]).passages == (doc,)


def test_overrides_change_only_the_named_fields():
    base = get_prompt_spec("rankgpt")
    assert get_prompt_spec("rankgpt") is base
    changed = get_prompt_spec("rankgpt", cot=True, truncate_length=50)
    assert (changed.cot, changed.truncate_length) == (True, 50)
    assert {k: v for k, v in changed.to_json().items() if k not in ("cot", "truncate_length")} == \
        {k: v for k, v in base.to_json().items() if k not in ("cot", "truncate_length")}


def test_errors_name_the_choices_the_key_and_the_folder(tmp_path):
    from data_prep.prompts import PromptSpec, load_prompt_spec_file, resolve_prompt_spec

    with pytest.raises(DataError) as err:
        get_prompt_spec("nope")
    assert err.value.fix == "use one of ['dear-card', 'dear-cot', 'rankgpt']"
    with pytest.raises(DataError) as err:
        PromptSpec.from_json({**get_prompt_spec("rankgpt").to_json(), "temperature": 0.2})
    assert "['temperature']" in err.value.message
    with pytest.raises(DataError) as err:
        resolve_prompt_spec(str(tmp_path))
    assert err.value.path == str(tmp_path) and "prep/adapter folder" in err.value.fix
    missing = tmp_path / "gone.json"
    with pytest.raises(DataError) as err:
        load_prompt_spec_file(missing)
    assert str(missing) in str(err.value) and "prompt spec" in str(err.value)
    with pytest.raises(DataError) as err:
        render_prompt(get_prompt_spec("dear-card"), "\t", ["a"])
    assert err.value.fix == "drop the record or give the query text"


def test_cot_training_records_carry_the_reasoning_then_the_marker_line():
    spec = get_prompt_spec("dear-cot")
    rec = training_record(spec, render_prompt(spec, "q", ["a", "b", "c"]), [2, 0, 1], reasoning=" [3] answers it. ")
    assert rec["completion"] == [{"role": "assistant", "content": "[3] answers it.\n### Final Reranking: [3] > [1] > [2]"}]
    think = get_prompt_spec("rankgpt", cot=True)
    rec = training_record(think, render_prompt(think, "q", ["a", "b"]), [1, 0], reasoning="why")
    assert rec["completion"][0]["content"] == "<think>\nwhy\n</think>\n[2] > [1]"


def test_special_token_text_in_a_passage_is_counted_as_plain_text(tiny_tokenizer):
    from data_prep.prompt_tokens import model_input_ids
    from data_prep.prompts import prompt_token_count

    spec = get_prompt_spec("rankgpt")
    prompt = render_prompt(spec, "q", ["see <|eot_id|> here", "b"])
    plain = model_input_ids(prompt, tiny_tokenizer)
    assert prompt_token_count(prompt, tiny_tokenizer) == len(plain)
    as_control = tiny_tokenizer.apply_chat_template(list(prompt.as_model_input()), add_generation_prompt=True,
                                                    tokenize=True, return_dict=False)
    assert len(plain) > len(as_control)  # the string is several plain tokens, not one control token


def _tokens(tok, text: str) -> int:
    return len(tok.encode(text))


def _budget_cases(tok):
    """Every budget from the empty-passages overhead up to the full prompt, for passages of unequal length."""
    spec = get_prompt_spec("dear-card")
    docs = ["«short» one", "a middle sized passage about things " * 3, "long passage text with many words " * 8]
    full = _tokens(tok, render_prompt(spec, "query", docs).text)
    empty = _tokens(tok, render_prompt(spec, "query", ["", "", ""]).text)
    return spec, docs, empty, full


def test_a_prompt_that_fits_exactly_is_not_cut(tiny_tokenizer):
    spec, docs, _, full = _budget_cases(tiny_tokenizer)
    p = render_prompt(spec, "query", docs, tokenizer=tiny_tokenizer, max_tokens=full)
    assert p.passages == tuple(docs)
    with pytest.raises(DataError, match="even with empty passages"):
        render_prompt(spec, "query", docs, tokenizer=tiny_tokenizer, max_tokens=_budget_cases(tiny_tokenizer)[2] - 1)


def test_every_budget_gets_the_largest_common_cap_that_fits(tiny_tokenizer):
    from data_prep.prompt_tokens import encode_plain

    spec, docs, empty, full = _budget_cases(tiny_tokenizer)
    ids = [encode_plain(tiny_tokenizer, d) for d in docs]

    def render_at(cap: int) -> str:
        shown = [d if len(i) <= cap else tiny_tokenizer.decode(i[:cap], skip_special_tokens=True)
                 for d, i in zip(docs, ids, strict=True)]
        return render_prompt(spec, "query", shown).text

    for budget in range(empty, full):
        p = render_prompt(spec, "query", docs, tokenizer=tiny_tokenizer, max_tokens=budget)
        assert _tokens(tiny_tokenizer, p.text) <= budget, budget
        caps = [c for c in range(max(len(i) for i in ids) + 1) if render_at(c) == p.text]
        assert caps, f"budget {budget}: the passages were not cut to one common token cap"
        assert _tokens(tiny_tokenizer, render_at(max(caps) + 1)) > budget, f"budget {budget}: a larger cap fits"


@pytest.mark.parametrize("lengths", [[], [5], [3, 3, 3], [1, 10, 100], [7, 2, 9, 4], [0, 0, 12]])
def test_water_fill_is_the_largest_cap_within_the_budget(lengths):
    from data_prep.prompts import _water_fill

    for budget in range(sum(lengths) + 3):
        cap = _water_fill(lengths, budget)
        assert sum(min(n, cap) for n in lengths) <= budget or cap == 0
        best = max((c for c in range(max(lengths, default=0) + 1) if sum(min(n, c) for n in lengths) <= budget), default=0)
        assert cap == best, (lengths, budget)


def test_a_token_cut_spec_cuts_each_passage_to_its_first_tokens(tiny_tokenizer):
    from data_prep.prompt_tokens import encode_plain

    spec = get_prompt_spec("dear-card", truncate_unit="tokens", truncate_length=5)
    long = "the quick brown fox jumps over the lazy dog again and again"
    p = render_prompt(spec, "q", [long, "short"], tokenizer=tiny_tokenizer)
    assert p.passages == (tiny_tokenizer.decode(encode_plain(tiny_tokenizer, long)[:5]), "short")
    assert len(encode_plain(tiny_tokenizer, p.passages[0])) == 5
    with pytest.raises(ValueError, match="needs a tokenizer"):
        render_prompt(spec, "q", [long])


def test_a_plain_spec_numbers_from_its_id_base_and_gives_its_text_as_model_input():
    spec = get_prompt_spec("dear-card", id_base=1)
    p = render_prompt(spec, "q", ["a", "b"])
    assert "\n[1] a\n[2] b\n" in p.text and p.as_model_input() == p.text
    chat = render_prompt(get_prompt_spec("rankgpt"), "q", ["a"])
    assert chat.as_model_input() == [dict(m) for m in chat.messages]

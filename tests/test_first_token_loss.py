"""The FIRST training objective: the weighted RankNet on a hand-computed example, where it finds the first id,
that it reaches only the first-id logits, its checks before training, and that it trains first-token ranking."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from data_prep.prompts import get_prompt_spec, render_prompt, training_record
from data_prep.schema import DataError


def softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def test_weighted_ranknet_equals_the_hand_computed_value():
    import torch

    from dear_train.first_token_loss import ranknet_weighted

    # ids 0, 1, 2 with logits 1.0, -1.0, 0.5; teacher order [2] > [0] > [1]: ranks r2 = 1, r0 = 2, r1 = 3
    s = torch.tensor([1.0, -1.0, 0.5])
    expected = (softplus(1.0 - 0.5) / (1 + 2)  # 2 above 0: log(1 + e^(s0 - s2)) / (r2 + r0)
                + softplus(-1.0 - 0.5) / (1 + 3)  # 2 above 1
                + softplus(-1.0 - 1.0) / (2 + 3))  # 0 above 1
    assert ranknet_weighted(s, [2, 0, 1]).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.974077 / 3 + 0.201413 / 4 + 0.126928 / 5, rel=1e-5)
    # the teacher order reversed costs more, and a perfectly separated order costs ~0
    assert ranknet_weighted(s, [1, 0, 2]).item() > expected
    assert ranknet_weighted(torch.tensor([30.0, 0.0, 60.0]), [2, 0, 1]).item() < 1e-12


def test_completion_targets_finds_every_completion_and_its_first_id():
    import torch

    from dear_train.first_token_loss import completion_targets

    ids = {100: 0, 101: 1, 102: 2}  # token -> window position
    x = -100
    labels = torch.tensor([
        [x, x, x, 7, 102, 9, 8, 100, 9, 8, 101, 9, 5, x, x],  # " [" 2 "]" " >" " [" 0 ...; then right padding
        [x, x, 7, 101, 9, 8, 100, 5, x, x, x, 7, 100, 9, 5],  # two packed completions (padding-free)
    ])
    assert completion_targets(labels, ids) == [(0, 4, [2, 0, 1]), (1, 3, [1, 0]), (1, 12, [0])]


def test_the_batch_loss_is_the_mean_over_completions_not_the_sum():
    """Two completions give the mean of their two RankNet values, and the loss of a batch does not grow with
    its size: the same completion twice costs what it costs once (a sum would double it, and the weight's
    meaning would change with the batch size and packing)."""
    import torch

    from dear_train.first_token_loss import FirstTokenObjective, ranknet_weighted

    x = -100
    labels = torch.tensor([[x, 7, 102, 9, 100, 9, 101, 5],  # first id at position 2, order [2] > [0] > [1]
                           [x, x, 7, 101, 9, 102, 100, 5]])  # first id at position 3, order [1] > [2] > [0]
    torch.manual_seed(0)
    logits = torch.randn(2, 8, 110)
    objective = FirstTokenObjective(10.0, [100, 101, 102])
    loss, n = objective.loss(logits, labels, project=lambda h: h)
    a = ranknet_weighted(logits[0, 1, [100, 101, 102]], [2, 0, 1])
    b = ranknet_weighted(logits[1, 2, [100, 101, 102]], [1, 2, 0])
    assert n == 2 and loss.item() == pytest.approx(((a + b) / 2).item(), rel=1e-6)
    twice, n2 = objective.loss(torch.cat([logits[:1], logits[:1]]), torch.cat([labels[:1], labels[:1]]),
                               project=lambda h: h)
    once, n1 = objective.loss(logits[:1], labels[:1], project=lambda h: h)
    assert (n1, n2) == (1, 2) and twice.item() == pytest.approx(once.item(), rel=1e-6) and once.item() > 0


def test_completion_targets_edges_and_the_loss_accumulates_in_fp32():
    """A completion whose first id directly follows one masked position; a completion at position 0 has no
    position before it to predict its first id (skipped, not read from its second id); bf16 hidden states
    still give an fp32 loss."""
    import torch

    from dear_train.first_token_loss import FirstTokenObjective, completion_targets

    ids = {100: 0, 101: 1, 102: 2}
    x = -100
    assert completion_targets(torch.tensor([[x, 100, 9, 101]]), ids) == [(0, 1, [0, 1])]
    assert completion_targets(torch.tensor([[100, 9, 101, 5]]), ids) == []
    labels = torch.tensor([[x, 7, 102, 9, 100, 9, 101, 5]])
    hidden = torch.randn(1, 8, 110).to(torch.bfloat16)
    loss, n = FirstTokenObjective(10.0, [100, 101, 102]).loss(hidden, labels, project=lambda h: h)
    assert n == 1 and loss.dtype == torch.float32


def _records(tokenizer, spec_name="dear-card", n=5, orders=((3, 0, 4, 1, 2), (1, 2, 0, 4, 3))):
    spec = get_prompt_spec(spec_name, truncate_length=40)
    recs = []
    for q, order in enumerate(orders):
        passages = [f"passage number {i} about topic {q}" for i in range(n)]
        recs.append(training_record(spec, render_prompt(spec, f"query {q}", passages), list(order)))
    return spec, recs


def _collate(tokenizer, recs):
    """Right-padded input ids and completion-only labels, as TRL's collator builds them."""
    import torch

    from dear_train.first_token_loss import _prompt_and_full_ids

    rows = []
    for rec in recs:
        prompt, full = _prompt_and_full_ids(rec, tokenizer)
        full = full + [tokenizer.eos_token_id]
        rows.append((full, [-100] * len(prompt) + full[len(prompt):]))
    width = max(len(f) for f, _ in rows)
    ids = torch.tensor([f + [tokenizer.pad_token_id] * (width - len(f)) for f, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    return ids, labels


@pytest.mark.parametrize("spec_name", ["dear-card", "rankgpt"])
def test_the_rank_term_reaches_only_the_first_id_logits(tiny_tokenizer, spec_name):
    """Gradient of the RankNet term w.r.t. the full logits: non-zero only at the position predicting each
    completion's first id, and there only in the window's id-token columns."""
    import torch

    from dear_train.first_token_loss import FirstTokenObjective, _completion_text, check_first_token_examples

    spec, recs = _records(tiny_tokenizer, spec_name)
    tokens = check_first_token_examples({"train": recs}, tiny_tokenizer, spec, path="mem")
    assert len(tokens) == 5
    ids, labels = _collate(tiny_tokenizer, recs)
    logits = torch.randn(ids.shape[0], ids.shape[1], len(tiny_tokenizer), requires_grad=True)
    objective = FirstTokenObjective(10.0, tokens)
    loss, n = objective.loss(logits, labels, project=lambda h: h)  # "hidden" = logits, identity head
    assert n == 2 and loss.item() > 0
    loss.backward()
    grad = logits.grad
    nonzero = {tuple(i) for i in grad.nonzero().tolist()}
    expected = set()
    for r in range(ids.shape[0]):
        first = next(t for t in range(ids.shape[1]) if labels[r, t].item() in set(tokens))
        # the first id token is the one the completion's text starts with after the answer start
        completion = _completion_text(recs[r])
        assert tiny_tokenizer.decode([ids[r, first].item()]) == completion.strip()[1:].split("]")[0]
        expected |= {(r, first - 1, t) for t in tokens}
    assert nonzero == expected


def test_check_refuses_ids_that_are_not_one_token_and_cot_specs(tiny_tokenizer):
    from dear_train.first_token_loss import check_first_token_examples

    spec = get_prompt_spec("dear-card")
    n = 30  # ids past 20 split into two tokens with the tiny tokenizer
    rec = {"prompt": "rank these", "completion": " " + " > ".join(f"[{i}]" for i in range(n))}
    ok = {"prompt": "rank these", "completion": " [1] > [0]"}
    with pytest.raises(DataError, match=r"train record 1 \(line 2 of train.jsonl\).*id 21 is .*at most 21"):
        check_first_token_examples({"train": [ok, rec]}, tiny_tokenizer, spec, path="prep")
    cot = get_prompt_spec("dear-cot")
    with pytest.raises(DataError, match="chain-of-thought.*first_token_loss_weight: 0"):
        check_first_token_examples({"train": [ok]}, tiny_tokenizer, cot, path="prep")
    bad = {"prompt": "rank these", "completion": " [1] > [1]"}
    with pytest.raises(DataError, match="train record 0.*not a clean ranking"):
        check_first_token_examples({"train": [bad]}, tiny_tokenizer, spec, path="prep")


def test_train_config_rejects_a_negative_weight(tiny_model_dir, tmp_path):
    from dear_train import sft
    from dear_train.config import ConfigError, parse_config
    from tests._train_helpers import tiny_args

    (tmp_path / "data").mkdir()
    argv = tiny_args(tiny_model_dir, tmp_path / "data", tmp_path / "out", "--first_token_loss_weight", "-1")
    with pytest.raises(ConfigError, match="first_token_loss_weight must be >= 0"):
        sft.validate(*parse_config(sft.config_classes(), argv))


# -- a short training on the quickstart's data ---------------------------------------------------------------


@pytest.fixture(scope="module")
def noveleval_prep(tmp_path_factory) -> Path:
    """The quickstart's data: the embedded NovelEval sample, judgments as teacher, windows of 5 (100 chars)."""
    from data_prep.cli import main as prep_main
    from data_prep.samples import noveleval_paths

    data_json, qrels = noveleval_paths()
    out = tmp_path_factory.mktemp("noveleval") / "prep"
    rc = prep_main(["listwise", "--teacher", str(data_json), "--format", "qrels", "--qrels", str(qrels),
                    "--out", str(out), "--prompt", "dear-card", "--window", "5", "--stride", "3",
                    "--passage-length", "100", "--shuffle", "1", "--eval-fraction", "0.25", "--seed", "0"])
    assert rc == 0
    return out


def kendall_tau(a, b) -> float:
    """Kendall tau between two orders of the same items (no ties)."""
    pos = {k: i for i, k in enumerate(b)}
    n = len(a)
    concordant = sum(1 for i in range(n) for j in range(i + 1, n) if pos[a[i]] < pos[a[j]])
    pairs = n * (n - 1) // 2
    return (2 * concordant - pairs) / pairs


def _agreement(model, tokenizer, records, spec) -> tuple[float, float]:
    """Mean Kendall tau and top-1 agreement of the first-token order with each record's teacher order."""
    from data_prep.prompts import answer_start
    from data_prep.ranking import parse_ranking
    from inference.engine.first_token import HFFirstTokenScorer, IdTokenTable, ScoreRequest, window_order

    table = IdTokenTable(tokenizer, spec)
    scorer = HFFirstTokenScorer(model, tokenizer)
    reqs, teacher = [], []
    for i, rec in enumerate(records):
        n = len(re.findall(r"\[\d+\]", rec["completion"]))
        teacher.append(parse_ranking(rec["completion"], n, base=spec.id_base).order)
        reqs.append(ScoreRequest(key=i, text=rec["prompt"] + answer_start(spec), add_special_tokens=True,
                                 id_tokens=table.for_window(n)))
    import torch

    with torch.no_grad():
        scored = scorer.score(reqs)
    taus, top1 = [], []
    for s, t in zip(scored, teacher, strict=True):
        order = window_order(s.logits, range(len(s.logits)))
        taus.append(kendall_tau(order, t))
        top1.append(order[0] == t[0])
    return sum(taus) / len(taus), sum(top1) / len(top1)


def test_first_token_objective_raises_first_token_agreement_more_than_lm_only(tiny_model_dir, noveleval_prep,
                                                                            tmp_path, one_torch_thread):
    """Same short training (same data, seed, steps) with L = 10 and with L = 0: the first-token order of the
    training windows agrees with the teacher order clearly more after the L = 10 run (figures in the message)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dear_train import sft
    from dear_train.config import parse_config
    from dear_train.listwise_data import load_prep_output
    from tests._train_helpers import tiny_args

    splits, spec = load_prep_output(noveleval_prep)
    records = list(splits["train"].select(range(48)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    before = _agreement(base, tokenizer, records, spec)
    figures = {}
    for weight in (0.0, 10.0):
        argv = tiny_args(tiny_model_dir, noveleval_prep, tmp_path / f"w{weight}", "--max_steps", "40",
                         "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--lora_dropout", "0.0",
                         "--gradient_checkpointing", "false", "--max_train_samples", "48", "--eval_split", "",
                         "--first_token_loss_weight", str(weight))
        trainer = sft.run(*parse_config(sft.config_classes(), argv))
        figures[weight] = _agreement(trainer.model.eval(), tokenizer, records, spec)
        logged = [h for h in trainer.state.log_history if "loss" in h]
        assert ("first_token_rank_loss" in logged[0]) == (weight > 0)
    gain_lm = figures[0.0][0] - before[0]
    gain_first = figures[10.0][0] - before[0]
    msg = (f"Kendall tau / top-1 before {before}, after L=0 {figures[0.0]}, after L=10 {figures[10.0]}")
    print(msg)
    # measured: tau -0.29 -> 0.25 (L=0) vs 0.39 (L=10); top-1 0.10 -> 0.13 vs 0.52
    assert gain_first > gain_lm + 0.07, msg
    assert figures[10.0][1] > figures[0.0][1] + 0.2, msg


def test_ranking_eval_can_score_with_first_token(tiny_model_dir, shared_data, tmp_path):
    """`ranking_eval_scoring: first-token`: the held-out queries are ranked by first-id logits during training
    (always full permutations, so every window is valid) and the record says how it scored."""
    from dear_train import sft
    from dear_train.config import parse_config
    from tests._train_helpers import DL19_JSON, DL19_QRELS, build_prep_folder, tiny_args

    data = build_prep_folder(tmp_path / "prep", shared_data)
    out = tmp_path / "out"
    argv = tiny_args(tiny_model_dir, data, out, "--max_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
                     "--ranking_eval_data", str(shared_data.joinpath(*DL19_JSON)),
                     "--ranking_eval_qrels", str(shared_data.joinpath(*DL19_QRELS)), "--ranking_eval_queries", "2",
                     "--ranking_eval_top_k", "6", "--ranking_eval_window", "4", "--ranking_eval_stride", "2",
                     "--ranking_eval_scoring", "first-token", "--first_token_loss_weight", "10")
    sft.run(*parse_config(sft.config_classes(), argv))
    import json

    (record,) = [json.loads(x) for x in (out / "ranking_eval.jsonl").read_text().splitlines()]
    assert record["step"] == 2 and record["scoring"] == "first-token"
    assert record["valid_window_share"] == 1.0 and 0.0 <= record["metrics"]["ndcg@10"] <= 1.0

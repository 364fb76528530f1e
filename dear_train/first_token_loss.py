"""The FIRST training objective: LM loss + L * weighted RankNet over the logits of the first generated id.

FIRST (Reddy et al., 2024) trains a listwise reranker so that the logits it gives each candidate id at the FIRST
id position of its answer already rank the window, which lets inference score a window with one forward pass
(``inference.engine.first_token``). For a completion ``[4] > [1] > [0] ...`` the teacher ranks are r(4) = 1,
r(1) = 2, ...; with s_k the logit of id k's token at the position that predicts the first id::

    L_rank = sum over pairs r_i < r_j of  log(1 + exp(s_j - s_i)) / (r_i + r_j)      (per example, summed)

averaged over the examples of the batch, and the trainer minimises ``L_lm + weight * L_rank`` (FIRST: weight 10).

Everything is read from the tokenized batch, nothing is assumed: each completion is a run of label positions
(labels != -100); its id tokens (the table of :class:`inference.engine.first_token.IdTokenTable`) in order are
the teacher order, and the first of them is the first-id position. :func:`check_first_token_examples` proves,
before training, that every example has that shape with each id one token (else a :class:`DataError` naming the
example and the fix). The logits are computed for those few positions only, from the backbone's last hidden
state and the LM head module, so TRL's fused LM head keeps not building the full logits, and the LM head is
called as a module (ZeRO-3 gathers its shards).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from data_prep.prompts import PromptSpec
from data_prep.schema import DataError

logger = logging.getLogger(__name__)

FIRST_WEIGHT = 10.0  # FIRST's lambda


def ranknet_weighted(scores: Any, order: Sequence[int]) -> Any:
    """Weighted RankNet of one window: ``scores[k]`` is id k's logit, ``order`` the teacher order (ids best
    first). Pairs (i above j) cost ``log(1 + exp(s_j - s_i)) / (r_i + r_j)`` with 1-based ranks r."""
    import torch

    n = len(order)
    idx = torch.as_tensor(list(order), device=scores.device)
    s = scores[idx].float()  # s[a] = score of the id at teacher rank a + 1
    ranks = torch.arange(1, n + 1, device=scores.device, dtype=torch.float32)
    diff = s[None, :] - s[:, None]  # diff[a, b] = s_b - s_a
    weight = 1.0 / (ranks[:, None] + ranks[None, :])
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=scores.device), diagonal=1)  # a ranked above b
    return (torch.nn.functional.softplus(diff) * weight)[upper].sum()


def completion_targets(labels: Any, token_to_id: dict[int, int]) -> list[tuple[int, int, list[int]]]:
    """``(row, position of the first id token, teacher order)`` for every completion in a batch of labels.

    A completion is a maximal run of positions whose label is not -100 (padded rows hold one, padding-free and
    packed rows several); its id tokens in order are the teacher order (0-based window positions)."""
    out: list[tuple[int, int, list[int]]] = []
    rows = labels.tolist()
    for r, row in enumerate(rows):
        t, n = 0, len(row)
        while t < n:
            if row[t] == -100:
                t += 1
                continue
            first, order = -1, []
            while t < n and row[t] != -100:
                k = token_to_id.get(row[t])
                if k is not None:
                    if first < 0:
                        first = t
                    order.append(k)
                t += 1
            if first > 0:
                out.append((r, first, order))
    return out


class FirstTokenObjective:
    """``weight * mean over completions of ranknet_weighted(first-id logits, teacher order)`` for one batch."""

    def __init__(self, weight: float, id_tokens: Sequence[int]) -> None:
        self.weight = float(weight)
        self.id_tokens = list(id_tokens)  # token of window position k (id base + k)
        self.token_to_id = {t: k for k, t in enumerate(self.id_tokens)}

    def loss(self, hidden: Any, labels: Any, project: Callable[[Any], Any]) -> tuple[Any, int]:
        """The mean weighted RankNet (unweighted by ``self.weight``) and the number of completions.

        ``hidden`` is the backbone's last hidden state (batch, seq, d) and ``project`` the LM head; the logits
        predicting the first id come from the position before it."""
        import torch

        targets = completion_targets(labels, self.token_to_id)
        if not targets:
            return hidden.sum() * 0.0, 0  # stays in the graph: every rank runs the same backward
        rows = torch.tensor([r for r, _, _ in targets], device=hidden.device)
        cols = torch.tensor([p - 1 for _, p, _ in targets], device=hidden.device)
        logits = project(hidden[rows, cols])  # (completions, vocab)
        total = hidden.new_zeros((), dtype=torch.float32)
        for i, (_, _, order) in enumerate(targets):
            window = torch.as_tensor(self.id_tokens[: len(order)], device=logits.device)
            total = total + ranknet_weighted(logits[i, window], order)
        return total / len(targets), len(targets)


# -- checks before training ---------------------------------------------------------------------------------


def _prompt_and_full_ids(rec: dict[str, Any], tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids of the prompt alone and of prompt + completion, as the trainer sees them (special-token text in a
    passage stays text: ``data_prep.prompt_tokens``)."""
    from data_prep.prompt_tokens import record_token_ids

    return record_token_ids(rec, tokenizer)


def _completion_text(rec: dict[str, Any]) -> str:
    c = rec["completion"]
    return c if isinstance(c, str) else "".join(m["content"] for m in c)


def check_first_token_examples(datasets: dict[str, Any], tokenizer: Any, spec: PromptSpec, *,
                               path: str) -> list[int]:
    """Check every example of every split for the first-token objective; returns the id-token table.

    Each completion, tokenized as the trainer will, must begin with the answer start and hold the ids of its
    ranking as single tokens in ranking order (so the first of them is the first-id position). Raises a
    :class:`DataError` naming the split, the record (line of ``{split}.jsonl``) and the fix otherwise."""
    from data_prep.prompts import answer_start
    from data_prep.ranking import parse_ranking
    from inference.engine.first_token import FirstTokenError, IdTokenTable

    fix_off = "or train without it (first_token_loss_weight: 0)"
    try:
        start = answer_start(spec)
    except DataError as err:
        raise DataError(f"first_token_loss_weight > 0 needs a non-CoT prompt spec: {err.args[0]}", path=path,
                        fix=f"use a dear-card or rankgpt dataset, {fix_off}") from None
    table = IdTokenTable(tokenizer, spec)
    for split, ds in datasets.items():
        for i, rec in enumerate(ds):
            where = f"{split} record {i} (line {i + 1} of {split}.jsonl)"
            text = _completion_text(rec)
            if not text.startswith(start):
                raise DataError(f"{where}: the completion does not start with {start!r}: {text[:40]!r}", path=path,
                                fix=f"rebuild the data with `dear prep listwise` for spec {spec.name}, {fix_off}")
            n = len(_ids_in(text))
            parsed = parse_ranking(text, n, base=spec.id_base, cot=False)
            if not parsed.ok:
                raise DataError(f"{where}: the completion is not a clean ranking of {n} ids ({parsed.repairs})",
                                path=path, fix=f"rebuild the data with `dear prep listwise`, {fix_off}")
            try:
                tokens = table.for_window(n)
            except FirstTokenError as err:
                raise DataError(f"{where}: {err.args[0]}", path=path,
                                fix=f"build the data with windows of at most {len(table.tokens)} passages, "
                                    f"{fix_off}") from None
            prompt_ids, full = _prompt_and_full_ids(rec, tokenizer)
            k = 0
            while k < min(len(prompt_ids), len(full)) and prompt_ids[k] == full[k]:
                k += 1
            lookup = {t: j for j, t in enumerate(tokens)}
            found = [lookup[t] for t in full[k:] if t in lookup]
            if found != list(parsed.order):
                shown = [tokenizer.decode([t]) for t in full[k:k + 12]]
                raise DataError(f"{where}: the tokenized completion does not hold its ids as single tokens in ranking "
                                f"order (first tokens {shown})", path=path,
                                fix=f"use a tokenizer that keeps each id one token after {start!r}, smaller windows, "
                                    f"{fix_off}")
    return table.tokens


def _ids_in(text: str) -> list[str]:
    import re

    return re.findall(r"\[(\d+)\]", text)


# -- the trainer hook -----------------------------------------------------------------------------------------


def _backbone_and_head(model: Any, unwrap: Callable[[Any], Any]) -> tuple[Any, Any]:
    """The decoder stack (whose output is the last hidden state, after the final norm) and the LM head module of
    a (DDP/DeepSpeed-wrapped, PEFT-wrapped) causal LM."""
    lm = unwrap(model)
    if callable(getattr(lm, "get_base_model", None)):
        lm = lm.get_base_model()
    backbone = getattr(lm, lm.base_model_prefix)
    return backbone, lm.get_output_embeddings()


def first_token_trainer_class() -> type:
    """``SFTTrainer`` whose ``compute_loss`` adds ``weight * L_rank`` (set ``first_token`` on the instance)."""
    from trl import SFTTrainer

    class FirstTokenSFTTrainer(SFTTrainer):
        first_token: FirstTokenObjective

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            labels = inputs.get("labels")
            backbone, head = _backbone_and_head(model, self.accelerator.unwrap_model)
            captured: list[Any] = []

            def grab(_module: Any, _args: Any, output: Any) -> None:
                if not captured:  # the first (training) forward; TRL may run a second one for metrics
                    captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

            handle = backbone.register_forward_hook(grab)
            try:
                result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                              num_items_in_batch=num_items_in_batch)
            finally:
                handle.remove()
            lm_loss = result[0] if return_outputs else result
            rank, _ = self.first_token.loss(captured[0], labels, head)
            # Like TRL's MoE aux loss: with num_items_in_batch the Trainer leaves gradient accumulation to the loss.
            steps = getattr(self, "current_gradient_accumulation_steps", 1) if (
                num_items_in_batch is not None and model.training) else 1
            loss = lm_loss + self.first_token.weight * rank.to(lm_loss.dtype) / steps
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["first_token_rank_loss"].append(
                self.accelerator.gather_for_metrics(rank.detach().reshape(1)).mean().item())
            return (loss, result[1]) if return_outputs else loss

    return FirstTokenSFTTrainer

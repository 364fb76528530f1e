"""nDCG@10 of a teacher order against qrels (trec_eval's linear-gain ``ndcg_cut.10`` via ir_measures).

The qrels are restricted to the candidates the order covers, so the score measures how well the teacher
ordered what it was shown (1.0 = the best order of those candidates), not how good the first stage was. An
order over candidates none of which is judged relevant has no score (None): it is kept, not filtered.
"""

from __future__ import annotations

from collections.abc import Sequence

from data_prep.readers import Qrels


def ndcg_at_10(qid: str, ranking: Sequence[str], qrels: Qrels) -> float | None:
    judged = qrels.get(qid, {})
    sub = {d: judged[d] for d in ranking if d in judged}
    if not any(rel > 0 for rel in sub.values()):
        return None
    import ir_measures

    n = len(ranking)
    run = {qid: {docid: float(n - i) for i, docid in enumerate(ranking)}}
    result = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], {qid: sub}, run)
    return float(result[ir_measures.nDCG @ 10])

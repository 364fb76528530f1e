"""Stage-1 distillation losses as pure functions over grouped scores.

Every tensor is ``(groups, group_size)``: row ``g`` holds the scores of one query's passages, the positive
at index 0 followed by its sampled negatives. Student and teacher scores are of the SAME passages.

    total = (1 - alpha) * L_rank + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

``L_rank`` is softmax cross-entropy with the positive as the target (DeAR's default), RankNet (pairwise
logistic loss on every pair the teacher orders), or a weighted mix of the two (DeAR: 0.5 / 0.5).
All of them are invariant to adding a constant to a row of student or of teacher scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

RankLoss = Literal["ce", "ranknet", "mix"]
RANK_LOSSES: tuple[str, ...] = ("ce", "ranknet", "mix")


def softmax_ce_loss(student: torch.Tensor) -> torch.Tensor:
    """Mean over groups of ``-log softmax(student)[0]`` (the positive is at index 0)."""
    import torch.nn.functional as F

    return -F.log_softmax(student.float(), dim=-1)[:, 0].mean()


def ranknet_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Pairwise logistic loss ``log(1 + exp(-(s_i - s_j)))`` over all pairs with ``teacher_i > teacher_j``.

    Averaged over those pairs (ties in the teacher give no pair); 0 when no group has an ordered pair.
    """
    import torch
    import torch.nn.functional as F

    s = student.float()
    t = teacher.float()
    diff = s.unsqueeze(-1) - s.unsqueeze(-2)  # [g, i, j] = s_i - s_j
    ordered = (t.unsqueeze(-1) > t.unsqueeze(-2)).float()
    n_pairs = ordered.sum()
    if n_pairs == 0:
        return s.sum() * 0.0
    return (F.softplus(-diff) * ordered).sum() / torch.clamp(n_pairs, min=1.0)


def kl_distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, averaged over groups (``batchmean``)."""
    import torch.nn.functional as F

    t = float(temperature)
    log_p_student = F.log_softmax(student.float() / t, dim=-1)
    p_teacher = F.softmax(teacher.float().detach() / t, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * (t * t)


def rank_loss(student: torch.Tensor, teacher: torch.Tensor, kind: RankLoss = "ce",
              mix_weight: float = 0.5) -> torch.Tensor:
    """``L_rank``: ``ce``, ``ranknet``, or ``mix`` = ``mix_weight * ranknet + (1 - mix_weight) * ce``."""
    if kind == "ce":
        return softmax_ce_loss(student)
    if kind == "ranknet":
        return ranknet_loss(student, teacher)
    if kind == "mix":
        return mix_weight * ranknet_loss(student, teacher) + (1.0 - mix_weight) * softmax_ce_loss(student)
    raise ValueError(f"unknown rank loss {kind!r}; choose one of {RANK_LOSSES}")


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, *, kind: RankLoss = "ce", alpha: float = 0.1,
                 temperature: float = 2.0, mix_weight: float = 0.5) -> torch.Tensor:
    """The full stage-1 objective ``(1 - alpha) * L_rank + alpha * T^2 * KL(teacher || student)``."""
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} scores must both be "
                         "(groups, group_size)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    main = rank_loss(student, teacher, kind, mix_weight)
    if alpha == 0.0:
        return main
    return (1.0 - alpha) * main + alpha * kl_distill_loss(student, teacher, temperature)

"""Training: listwise LoRA SFT (TRL) and stage-1 pointwise distillation, plus the `dear` CLI."""

"""GRPO for listwise LoRA rerankers (`dear train --method grpo`, `-m dear_train.grpo`).

``rewards`` (the named reward functions), ``data`` (the prep folder's prompts and grades), ``config`` (the options),
``train`` (the GRPOTrainer run and the output folder). Nothing heavy is imported here.
"""

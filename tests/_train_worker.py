"""Run `dear train` (SFT, or GRPO after a leading ``--method grpo``) exactly like `python -m dear_train.sft` /
`-m dear_train.grpo`, then let every rank dump what it ended with.

Used by the multi-process tests (torchrun, accelerate): each rank writes ``rank{N}.safetensors`` (its LoRA tensors)
and ``rank{N}.json`` (world size, distributed type, global step, batch sizes, log history) into ``--output_dir``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from safetensors.torch import save_file

    from dear_train.config import parse_config
    from dear_train.deepspeed_cpu import install_deepspeed_cpu_shim

    if argv[:2] == ["--method", "grpo"]:
        from dear_train.grpo import config as method_config
        from dear_train.grpo import train as method
        argv = argv[2:]
    else:
        from dear_train import sft as method
        from dear_train import sft as method_config

    install_deepspeed_cpu_shim()
    script, training_args, model_args = parse_config(method_config.config_classes(), argv)
    trainer = method.run(script, training_args, model_args)
    rank = trainer.args.process_index
    out = Path(training_args.output_dir)
    lora = {n: p.detach().cpu().contiguous() for n, p in trainer.model.named_parameters() if "lora_" in n}
    save_file(lora, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world_size": trainer.args.world_size,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "global_step": trainer.state.global_step,
        "per_device_train_batch_size": trainer.args.per_device_train_batch_size,
        "total_train_batch_size": trainer._train_batch_size * trainer.args.world_size
        * trainer.args.gradient_accumulation_steps,
        "generation_batch_size": getattr(trainer.args, "generation_batch_size", None),
        "log_history": trainer.state.log_history,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

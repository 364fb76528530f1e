"""`python -m dear_train.grpo` (also under `accelerate launch -m` and `torchrun -m`) = `dear train --method grpo`."""

from dear_train.grpo.train import main

raise SystemExit(main())

"""`python -m dear_train.export` runs `dear export` (as it did when export was one module)."""

from dear_train.export.cli import main

raise SystemExit(main())

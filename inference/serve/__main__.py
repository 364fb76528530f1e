"""`python -m inference.serve` is `dear serve`."""

from inference.serve.cli import main

raise SystemExit(main())

from dear_train.cli import main

raise SystemExit(main())

from ._runtime.cli import main

raise SystemExit(main())

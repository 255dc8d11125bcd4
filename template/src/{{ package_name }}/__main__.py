from ._runtime.entry import main

raise SystemExit(main())

from convaudit.cli import main

raise SystemExit(main())

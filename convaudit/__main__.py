from convaudit.cli.app import main

raise SystemExit(main())

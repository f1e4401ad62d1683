"""`python -m servers` is the `conductor` command."""

from servers.cli import main

raise SystemExit(main())

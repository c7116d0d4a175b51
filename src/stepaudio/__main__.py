"""`python -m stepaudio`: the same as the `stepaudio` command."""

from stepaudio.cli.main import main

raise SystemExit(main())

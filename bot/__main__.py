"""``python -m bot`` is the same as the ``tsbot`` command."""

from bot.cli.main import main

raise SystemExit(main())

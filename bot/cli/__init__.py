"""The ``tsbot`` command line: :mod:`bot.cli.main` maps each subcommand to its own module here
(``demo``, ``serve``, ``sandbox``, ``callbacks``, ``manifest``, ``audit``, ``check``, ``outbox``)."""

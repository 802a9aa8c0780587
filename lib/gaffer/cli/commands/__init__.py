"""The ``gaffer`` subcommands, a module per family; each has
``register(subparsers, common)`` adding its parsers, whose ``func`` runs the
command as ``func(ctx, args) -> exit code``."""

"""Extra ``striate`` subcommands, one module each.

Every module here defines ``register(subparsers)``, which adds its subcommand(s) with
``set_defaults(func=...)``; ``striate.cli`` discovers them all.  A command function takes the
parsed arguments and returns the exit status; user errors are raised as ValueError (or the
project's DataError/CheckpointError) and printed by the CLI as one line.
"""

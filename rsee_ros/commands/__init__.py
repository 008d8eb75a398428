"""Subcommands of the ``rsee`` command line, one module each (``add_arguments`` and ``run``)."""

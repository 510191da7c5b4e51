"""The ``mmgen`` command line (see :mod:`mmgen.cli.main`)."""

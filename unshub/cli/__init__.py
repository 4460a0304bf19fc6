"""The ``uns`` command line: the one place that composes the packages into running services."""

"""The composition root of uns-hub: the only package that imports the services.

The ``uns`` command line (``unshub.cli``), the process supervisor behind ``uns up``, logging set-up,
the command client behind ``uns cmd send`` and the simulated line's default edge config live here, so
the core ``uns`` stays free of the services and the services free of each other
(``tests/test_layering.py`` reads every import to keep it so).
"""

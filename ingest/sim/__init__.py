"""A fleet of realistic simulated OCPP 1.6J / 2.0.1 chargers with a ground-truth log.

See ``README.md`` in this folder. Entry points: :func:`ingest.sim.cli.add_arguments` and
:func:`ingest.sim.cli.run` (wired into ``flowbank simulate``), or ``python -m ingest.sim``.
"""

"""Benchmarks of pyramid_sessionstore against its peers, in one run.

``python -m bench.run`` times the same minimal Pyramid app built with every
session factory (ours on each store, and the peers), ``python -m bench.hot``
has parallel writers set keys of one session through two server processes,
``python -m bench.load`` drives a served app with concurrent clients,
``python -m bench.scale`` stores a million sessions. Each writes its section
of ``docs/benchmarks.md`` and its part of ``docs/benchmarks.json``.

This is a measuring tool, not part of the package: nothing here is imported by
``pyramid_sessionstore``.
"""

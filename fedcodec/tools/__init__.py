"""The evaluation tooling: what the ``fedcodec`` command's benchmarks are made of.

- :mod:`~fedcodec.tools.frontier`: bits/param against NMSE of every codec on real updates,
  with the Shannon bound (:mod:`~fedcodec.tools.rd_bound`) and the structure-aware bound;
- :mod:`~fedcodec.tools.compare`: bits versus accuracy, one training run per codec;
- :mod:`~fedcodec.tools.speed`: encode/decode throughput next to a memory copy;
- :mod:`~fedcodec.tools.plots`: the figures of those documents;
- :mod:`~fedcodec.tools.demo`: ``make demo``'s report on embedded data;
- :mod:`~fedcodec.tools.sample_updates`: synthetic updates with real updates' structure;
- ``schemas/``: JSON schemas of the frontier, compare and speed documents.

The old module names (``fedcodec.frontier``, ``fedcodec.compare``, ``fedcodec.speed``,
``fedcodec.plots``, ``fedcodec.rd_bound``, ``fedcodec.demo``,
``fedcodec.sample_updates``) still import these modules (CHANGELOG.md).
"""

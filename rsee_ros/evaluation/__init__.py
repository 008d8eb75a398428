"""``rsee eval``, ``rsee bench`` and ``rsee bench-node``: accuracy, GFLOPs and speed of RSEE
against its baselines, and of the node itself.

Modules: :mod:`~rsee_ros.evaluation.methods` (the one registry of methods),
:mod:`~rsee_ros.evaluation.evaluate` (``rsee eval``), :mod:`~rsee_ros.evaluation.bench` and
:mod:`~rsee_ros.evaluation.streaming` (``rsee bench``), :mod:`~rsee_ros.evaluation.node_bench`
(``rsee bench-node``), :mod:`~rsee_ros.evaluation.data` (which videos, in what form),
:mod:`~rsee_ros.evaluation.metrics` (top-1, mAP, histograms),
:mod:`~rsee_ros.evaluation.comparisons` (data-set check, curve comparisons),
:mod:`~rsee_ros.evaluation.plot` (accuracy-versus-GFLOPs plot), :mod:`~rsee_ros.evaluation.clock`
(the one clock, the machine description) and :mod:`~rsee_ros.evaluation.common` (shared names).
Nothing is imported here, so importing the package stays cheap.
"""

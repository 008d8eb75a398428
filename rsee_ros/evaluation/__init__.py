"""``rsee eval`` and ``rsee bench``: accuracy, GFLOPs and speed of RSEE against its baselines.

Modules: :mod:`~rsee_ros.evaluation.evaluate` (the evaluation library),
:mod:`~rsee_ros.evaluation.metrics` (top-1, mAP, histograms), :mod:`~rsee_ros.evaluation.plot`
(accuracy-versus-GFLOPs plot), :mod:`~rsee_ros.evaluation.bench` (streaming benchmark) and
:mod:`~rsee_ros.evaluation.common` (shared names). Nothing is imported here, so importing the
package stays cheap.
"""

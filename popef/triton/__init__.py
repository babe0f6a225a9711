"""PopEF models on NVIDIA Triton Inference Server: a Python-based ``poplar`` backend.

Triton turns a folder ``<backend-directory>/poplar/model.py`` into a backend named ``poplar``
(Triton's "Python-based backends"), so the model repositories of Graphcore's Poplar Triton
backend — ``config.pbtxt`` with ``backend: "poplar"``, ``<version>/executable.popef``,
``<version>/name_map.json`` — load unchanged on a stock ``tritonserver``. See
``docs/deploy-triton.md``.

- :mod:`popef.triton.backend`: ``TritonPythonModel``, the backend itself, on
  :class:`popef.runtime.ModelRunner` and the config and request checks it shares with
  ``popef serve`` (:mod:`popef.servable`);
- :mod:`popef.triton.install`: ``popef triton install-backend`` — writes the backend's
  ``model.py`` into a backend directory;
- :mod:`popef.triton.environment`: ``popef triton setup`` / ``run`` — a real ``tritonserver``
  (Triton 2.51 from the ``nvidia-pytriton`` wheel) in an environment of its own, for
  development and tests.

Nothing here is imported by ``import popef``; this package imports Triton's
``triton_python_backend_utils`` only when Triton runs the backend.
"""

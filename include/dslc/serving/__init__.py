"""The model-serving service: FastAPI app, micro-batcher, input schema and prediction log.

Importing the package imports nothing heavy; ``python -m dslc.serving`` (or ``dslc serve``)
runs the server. Modules: :mod:`~dslc.serving.app` (HTTP API), :mod:`~dslc.serving.service`
(the served model, hot swap, admin token, body limits), :mod:`~dslc.serving.loading`
(download, compile and self-test a version), :mod:`~dslc.serving.metrics` (Prometheus and the
request middleware), :mod:`~dslc.serving.schema` (input validation from the model signature),
:mod:`~dslc.serving.batcher` (adaptive micro-batching), :mod:`~dslc.serving.predictor` (the
compiled fast path) and :mod:`~dslc.serving.predlog` (the prediction log in the lake).
"""

from __future__ import annotations

"""Training: one :class:`~loopline.train.model.Model` type for every kind of estimator,
:func:`~loopline.train.model.fit_model`, the MLflow model format (``mlflow_io``) and the
reference text classifier (``text``)."""

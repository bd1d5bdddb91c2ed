"""``loopline demo fraud``: the fraud reference system end to end, offline.

- :mod:`~loopline.examples.fraud.data` finds the Fraud Detection Handbook's simulated
  transactions and cuts the demo's world out of them (one region's customers);
- :mod:`~loopline.examples.fraud.pipelines` trains fraud-fast and fraud-heavy with
  Loopline pipelines of library steps, and the heavy model's retraining frame;
- :mod:`~loopline.examples.fraud.simulate` streams June through the decision service, day
  by day: delayed labels, the heavy model's re-score, an analyst on the review queue, the
  retrain, a bad release and its automatic rollback;
- :mod:`~loopline.examples.fraud.results` sums the stream up, scores June with the
  handbook's protocol and reads the monitoring reports;
- :mod:`~loopline.examples.fraud.demo` ties them together (``run_demo``) and prints the
  summary (``print_summary``, tables in :mod:`~loopline.examples.fraud.summary`).
"""

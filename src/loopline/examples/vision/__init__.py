"""``loopline demo vision``: digit detection versioned with DVC and retrained by the watcher
(see :mod:`~loopline.examples.vision.demo`)."""

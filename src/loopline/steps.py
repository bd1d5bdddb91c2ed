"""Every ready step of the loop in one place, for pipeline files::

    from loopline.steps import read_table, split, train, evaluate, profile, gate, register

Each step lives in its stage package (``loopline.<stage>.steps``) beside the functions it
wraps; this module only gathers them. They work for any model MLflow can log
(scikit-learn and its pipelines, LightGBM, PyTorch) and take keyword arguments named after
what they mean. Steps that read state from outside the pipeline (the review queue,
production feedback, the current champion) declare it themselves.
"""

from __future__ import annotations

from loopline.data.detection_steps import read_detection
from loopline.data.pii_steps import read_pii_table
from loopline.data.steps import read_images, read_table, read_text, split, version_images
from loopline.evaluate.detection_steps import evaluate_detector
from loopline.evaluate.steps import evaluate
from loopline.features.steps import compute_features
from loopline.label.steps import audit, human_labels, label
from loopline.monitor.steps import profile
from loopline.registry.detection_steps import gate_detector
from loopline.registry.steps import gate, register
from loopline.serve.steps import production_labels
from loopline.train.detector_steps import train_detector
from loopline.train.steps import search, train

__all__ = [
    "audit",
    "compute_features",
    "evaluate",
    "evaluate_detector",
    "gate",
    "gate_detector",
    "human_labels",
    "label",
    "production_labels",
    "profile",
    "read_detection",
    "read_images",
    "read_pii_table",
    "read_table",
    "read_text",
    "register",
    "search",
    "split",
    "train",
    "train_detector",
    "version_images",
]

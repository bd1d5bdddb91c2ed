"""The ready step of the features stage: the feature set's offline features, appended."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

    from loopline.features.definitions import FeatureSet


@step
def compute_features(data: pd.DataFrame, *, features: FeatureSet | None = None) -> pd.DataFrame:
    """``data`` with the offline features of ``features`` (the handbook's by default) as new
    columns, in ``data``'s row order: point-in-time correct (every window ends at the row's
    own time; delayed label rates end ``delay`` days before it), computed by DuckDB.
    Columns of the same names are replaced."""
    from loopline.features.definitions import handbook_features
    from loopline.features.offline import compute_offline

    features = features or handbook_features()
    computed = compute_offline(data, features)
    out = data.copy()
    for name in features.names:
        out[name] = computed[name].to_numpy()
    return out

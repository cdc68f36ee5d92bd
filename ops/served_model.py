"""The registered ensemble as an MLflow pyfunc model: image files in, privacy score and attribute
probabilities out, computed by ``privobfnet.serving.Scorer``, the object ``privobfnet score`` runs.

This file is the model's code (MLflow's "models from code"): ``ops/registry.py`` logs it with
``python_model=<this file>``, MLflow copies it into the model and runs it when the model is loaded,
so no Python object is pickled. It imports mlflow, pandas and the ``privobfnet`` package only (the
package rides along as the model's code path), never the rest of ``ops/``.

- **input**: a DataFrame with one column ``image``, type binary: the bytes of an image file (PNG,
  JPEG, anything ``privobfnet score`` reads), decoded upright as the command decodes its inputs. In
  a REST request (``mlflow models serve``) a binary column is sent base64-encoded.
- **output**: a DataFrame with one row per image: ``privacy_score`` in [0, 1], then one column per
  attribute id (``a9_face_complete``, ...) holding its probability, in the model's attribute order.
- **artifacts**: ``checkpoint``, the ensemble's ``final.pt`` (read with
  ``torch.load(weights_only=True)``). MediaPipe's files are the package's own data (logged with
  its code), so a served model needs no download; a ``detectors`` artifact, where a model logged
  before carries one, is the detector cache folder (else the command's default cache).
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

INPUT_COLUMN = "image"
SCORE_COLUMN = "privacy_score"
CHECKPOINT_ARTIFACT = "checkpoint"
DETECTORS_ARTIFACT = "detectors"


def predictions(scorer: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per image of ``frame[INPUT_COLUMN]``: the privacy score, then each attribute's probability."""
    if INPUT_COLUMN not in frame.columns:
        raise ValueError(
            f"the input needs a column {INPUT_COLUMN!r} holding image file bytes; "
            f"got columns {list(frame.columns)}"
        )
    rows = []
    for i, data in enumerate(frame[INPUT_COLUMN]):
        prediction = scorer.score_bytes(data, name=f"{INPUT_COLUMN}[{i}]")
        rows.append(
            {
                SCORE_COLUMN: float(prediction.privacy_score),
                **{n: float(p) for n, p in zip(scorer.class_names, prediction.attribute_probs)},
            }
        )
    return pd.DataFrame(rows, columns=[SCORE_COLUMN, *scorer.class_names])


class PrivObfNetModel(PythonModel):
    """Model-Image with the detectors of its priors, as ``privobfnet score`` runs it."""

    def load_context(self, context) -> None:
        from privobfnet.masks.assets import default_cache_dir
        from privobfnet.serving import Scorer

        cache_dir = context.artifacts.get(DETECTORS_ARTIFACT) or default_cache_dir()
        self.scorer = Scorer(context.artifacts[CHECKPOINT_ARTIFACT], cache_dir=cache_dir)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return predictions(self.scorer, model_input)


mlflow.models.set_model(PrivObfNetModel())

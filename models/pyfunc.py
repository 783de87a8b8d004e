"""The MLflow pyfunc flavour of a bundle: raw events of running cases in, predictions out."""

from __future__ import annotations

from typing import Any

import joblib
import mlflow.pyfunc
import pandas as pd

BUNDLE_ARTIFACT = "bundle"


class BundlePyfunc(mlflow.pyfunc.PythonModel):
    """Loads the pickled bundle; ``predict`` takes events in the mapping's columns."""

    def load_context(self, context: Any) -> None:
        self.bundle = joblib.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.output_for(self.bundle, model_input)

    @staticmethod
    def output_for(bundle: Any, raw: pd.DataFrame) -> pd.DataFrame:
        """Predictions with JSON-friendly timestamps (ISO strings)."""
        result = bundle.predict_raw(raw)
        for column in ("prefix_end", "case_start"):
            result[column] = result[column].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        return result


def load_bundle(model_uri: str) -> Any:
    """The native bundle (pipeline + LightGBM booster) behind a logged pyfunc model."""
    model = mlflow.pyfunc.load_model(model_uri)
    return model.unwrap_python_model().bundle

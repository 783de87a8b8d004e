"""The MLflow pyfunc flavour of a bundle: raw events of running cases in, predictions out."""

from __future__ import annotations

from typing import Any

import joblib
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from features.log import export_frame
from features.mapping import Mapping
from models.bundle import NoUsableEventsError

BUNDLE_ARTIFACT = "bundle"


class BundlePyfunc(mlflow.pyfunc.PythonModel):
    """Loads the pickled bundle; ``predict`` takes events in the mapping's columns."""

    def load_context(self, context: Any) -> None:
        self.bundle = joblib.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            return self.output_for(self.bundle, model_input)
        except NoUsableEventsError as exc:
            # MLflow's scoring server answers an MlflowException with its code (400 here)
            # and anything else with a 500 and a traceback
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc

    @staticmethod
    def output_for(bundle: Any, raw: pd.DataFrame) -> pd.DataFrame:
        """Predictions with JSON-friendly timestamps (ISO strings)."""
        result = bundle.score_export(raw).frame()
        for column in ("prefix_end", "case_start"):
            result[column] = result[column].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        return result


def input_example(events: pd.DataFrame, mapping: Mapping) -> pd.DataFrame:
    """Canonical events as the mapping's export writes them: the model's input example.

    ``export_frame`` writes ISO timestamps in UTC; a mapping that reads, say,
    ``%d/%m/%Y %H:%M`` in Europe/Berlin would quarantine every one of them, and the
    logged example would score to nothing. Here the times are written in the mapping's
    own format and zone, so the example is what a client of this model sends.
    """
    example = export_frame(events, mapping)
    fmt = mapping.format
    if fmt.timestamp_format.upper() == "ISO8601":
        return example
    ref = mapping.columns["timestamp"]
    column = ref if isinstance(ref, str) else ref[0]
    local = events["timestamp"].dt.tz_convert(fmt.timezone).reset_index(drop=True)
    example[column] = local.dt.strftime(fmt.timestamp_format)
    return example


def load_bundle(model_uri: str) -> Any:
    """The native bundle (pipeline + LightGBM booster) behind a logged pyfunc model."""
    model = mlflow.pyfunc.load_model(model_uri)
    return model.unwrap_python_model().bundle

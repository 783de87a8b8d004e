"""Errors the API answers with, each with its own HTTP status.

The app maps each class to a status in one place (``serving.app``); nothing chooses a
status by reading an error's words. Where a library raises something of its own at
the boundary (an unreadable upload, a JSON body nested too deeply), the route turns it
into one of these with a message that names the file or body and why. Every error
answer has one shape, ``ErrorResponse``, which the API's schema shows for each status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel


class ApiError(Exception):
    """An answer other than 200, with a message the client can act on."""

    status_code = 400


class BadRequestBodyError(ApiError):
    """The body cannot be read at all (not JSON, not UTF-8, nested beyond any use)."""

    status_code = 422


class UnreadableUploadError(ApiError):
    """An uploaded file cannot be read in the format its name says."""

    status_code = 422


class TooManyCasesError(ApiError):
    """More cases in one batch than the server takes."""

    status_code = 413


class NothingToForecastError(ApiError):
    """The log holds no open or won-but-unpaid case."""

    status_code = 422


class ModelMismatchError(ApiError):
    """The served model cannot encode input that the reader accepted: the model and this
    server disagree (trained by another version). Not the client's fault, and not
    curable by resending: like a missing model, a 503 that says what to do."""

    status_code = 503


class InsightRequestError(ApiError):
    """The insight cannot be computed as asked (e.g. segmented by an attribute the log
    does not have); the message names what to ask instead."""

    status_code = 422


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error answer: a sentence, or (a request that fails its schema) one entry per
    field at fault."""

    detail: str | list[ValidationIssue]


def validation_detail(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Field errors as ``ValidationIssue``: where, what, and the kind. The input is not
    echoed (it can be the whole body, or a value JSON cannot carry, such as NaN)."""
    return [{"loc": list(e["loc"]), "msg": str(e["msg"]), "type": str(e["type"])}
            for e in errors]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


#: the error answers every keyed route can give (FastAPI lists 200 and 422 by itself,
#: and its 422 says ``detail`` is always a list: ours is a sentence or a list)
SECURED_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("the body could not be parsed (a malformed multipart or JSON body)"),
    401: _error("missing or wrong API key"),
    413: _error("body over the size limit, or more cases than a batch takes"),
    422: _error("input that cannot be used: the message names the field, file or row"),
    503: _error("no model is served for a target the request needs"),
}

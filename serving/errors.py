"""Errors the API answers with, each with its own HTTP status.

The app maps each class to a status in one place (``serving.app``); nothing chooses a
status by reading an error's words. Where a library raises something of its own at
the boundary (an unreadable upload, a JSON body nested too deeply), the route turns it
into one of these with a message that names the file or body and why.
"""

from __future__ import annotations


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

"""Talking to Google Cloud: credentials, and every cloud-side failure as one `CloudError` line.

In the core so that a stage (push's Vertex AI deploy) and the orchestration (`lmpipe submit`,
`lmpipe schedule`) share one way of doing it.
"""

from __future__ import annotations

from typing import Callable

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class CloudError(Exception):
    """Google Cloud could not be reached or refused the request (exit status 1)."""


def default_credentials():
    """The user's Application Default Credentials, or a `CloudError` saying how to get them."""
    import logging

    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    # google.auth logs each place it looked; the error below says what to do instead.
    logging.getLogger("google.auth").setLevel(logging.ERROR)
    try:
        credentials, _ = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError:
        raise CloudError("no Google Cloud credentials found: run `gcloud auth application-default "
                         "login` or set GOOGLE_APPLICATION_CREDENTIALS") from None
    return credentials


def anonymous_credentials():
    """Credentials that sign nothing, for building requests without sending them."""
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def send(action: Callable[[], object], what: str):
    """Run `action` (a call that talks to Google Cloud); any cloud failure is one `CloudError`.

    Args:
        action: e.g. `lambda: job.submit(...)`.
        what: what is being sent, for the message.

    Returns:
        What `action` returns.
    """
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    try:
        return action()
    except (GoogleAPIError, GoogleAuthError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CloudError(f"{what} failed: {err.__class__.__name__}: {first}") from None

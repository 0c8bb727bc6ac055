"""The `vertex:` section of a Vertex AI provider in the config file."""

from __future__ import annotations

import msgspec


class VertexConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where the models run and who calls them. Unset fields fall back to Google's environment variables."""

    #: the Google Cloud project id; GOOGLE_CLOUD_PROJECT, else the service account's own project
    project: str | None = None
    #: the region (`us-central1`, `europe-west4`, ...) or `global`; GOOGLE_CLOUD_LOCATION
    location: str | None = None
    #: a service-account (or `gcloud auth application-default login`) JSON key; GOOGLE_APPLICATION_CREDENTIALS
    credentials_file: str | None = None

"""The `aws:` section of a Bedrock provider in the config file."""

from __future__ import annotations

import msgspec


class AwsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """AWS credentials and region. Unset fields fall back to the standard AWS environment variables."""

    #: AWS_REGION, then AWS_DEFAULT_REGION
    region: str | None = None
    #: AWS_ACCESS_KEY_ID
    access_key_id: str | None = None
    #: AWS_SECRET_ACCESS_KEY
    secret_access_key: str | None = None
    #: AWS_SESSION_TOKEN (temporary credentials)
    session_token: str | None = None
    #: cross-region inference: `auto` (the geography of `region`), `us`, `eu`, `apac`, `global`, ...; None: off
    inference_profile: str | None = None

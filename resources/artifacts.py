"""The artifact store (tensors, checkpoints) as a Dagster resource."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from recs_pipeline.infra.artifacts import UrlArtifactStore

# Option names that hold credentials in the fsspec backends (s3fs, gcsfs, adlfs, sftp, ...).
_SECRET_OPTIONS = {
    "key",
    "secret",
    "token",
    "password",
    "session_token",
    "client_secret",
    "account_key",
    "sas_token",
    "connection_string",
    "credentials",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
}


class ArtifactStore(dg.ConfigurableResource):
    """Artifacts under ``{root}/{asset}/{partition_key}/{name}``, published atomically, each
    stamped with its checksum and the id of the run that wrote it. The root is a folder or a
    URL (``s3://bucket/prefix``, any fsspec protocol)."""

    root: str = Field(
        default="data/artifacts",
        description="Root folder or URL (file:///…, s3://bucket/prefix, …) of the artifact store.",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options of a URL root (endpoint_url, region_name, …). Credentials"
        " are refused here, since config is shown in the UI and run logs: the backend reads them"
        " from the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, FSSPEC_S3_KEY/"
        "FSSPEC_S3_SECRET, an instance role, …).",
    )
    _run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Inside a run every write records the run's id, so a reader of the same run can tell
        # its own upstream output from one that another run of the partition wrote since.
        self._run_id = context.run_id
        self.store()  # refuse credentials in the config before the first step

    def store(self) -> UrlArtifactStore:
        secret = _secret_names(self.storage_options)
        if secret:
            # Names only: a validation error of the config would print the values.
            raise ValueError(
                f"artifacts.storage_options {secret} would put credentials in the config, which"
                " the UI and run logs show: set them in the environment instead"
                " (AWS_ACCESS_KEY_ID, …, or FSSPEC_<PROTOCOL>_<OPTION>, e.g. FSSPEC_S3_SECRET)"
            )
        return UrlArtifactStore(self.root, self._run_id, self.storage_options)


def _secret_names(options: dict[str, Any]) -> list[str]:
    """Credential option names in ``options``, nested ones (client_kwargs) included."""
    found = []
    for name, value in options.items():
        if name.lower() in _SECRET_OPTIONS:
            found.append(name)
        if isinstance(value, dict):
            found += [f"{name}.{inner}" for inner in _secret_names(value)]
    return found

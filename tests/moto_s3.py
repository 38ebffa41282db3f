"""A moto server (AWS's wire format on 127.0.0.1) for tests that talk to S3 and friends.

moto keeps its state per process, so one server serves a whole test session; give each
test its own bucket or key prefix. moto does not verify request signatures nor a
presigned POST's policy: what S3 itself enforces there is tested against the local
backend's own checks (tests/storage)."""

from __future__ import annotations

import logging
from typing import Any

from moto.server import ThreadedMotoServer

REGION = "us-east-1"
# moto accepts any credentials; these are never real.
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def start_moto() -> tuple[ThreadedMotoServer, str]:
    """Start moto on a free port of 127.0.0.1; returns the server (``stop()`` it) and its
    endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def aws_client(service: str, endpoint_url: str, **kwargs: Any) -> Any:
    """A boto3 client for ``service`` at the moto server, with test credentials."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint_url,
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
        **CREDENTIALS,
        **kwargs,
    )

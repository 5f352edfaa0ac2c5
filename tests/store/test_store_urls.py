"""Store URLs in messages: no password, no secret query value; a bad URL is a clear error."""

from __future__ import annotations

import pytest

from kerasguard.errors import StoreError
from kerasguard.store.db import make_engine
from kerasguard.store.urls import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://kg:hunter2@db:5432/kg", "postgresql+psycopg://kg:***@db:5432/kg"),
        ("postgresql://kg@db/kg?sslmode=require", "postgresql://kg@db/kg?sslmode=require"),
        (
            "postgresql://kg@db/kg?password=hunter2&sslmode=verify-full",
            "postgresql://kg@db/kg?password=***&sslmode=verify-full",
        ),
        (
            "s3://bucket/prefix?key=AKIAX&secret=hunter2&endpoint_url=http://minio:9000",
            "s3://bucket/prefix?key=***&secret=***&endpoint_url=http://minio:9000",
        ),
        ("redis://:hunter2@witness:6379/0?stream=kg-audit", "redis://:***@witness:6379/0?stream=kg-audit"),
        ("rediss://w:6380/0?Token=hunter2", "rediss://w:6380/0?Token=***"),
        (
            "s3://b/p?aws_secret_access_key=hunter2&X-Amz-Signature=abc",
            "s3://b/p?aws_secret_access_key=***&X-Amz-Signature=***",
        ),
        ("postgresql://u:p@[::1/kg", "postgresql://***"),
    ],
)
def test_secrets_never_reach_a_message(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_database_url_with_a_bad_port_is_a_clear_error() -> None:
    with pytest.raises(
        StoreError, match=r"cannot use database URL 'postgresql\+psycopg://kg:\*\*\*@db:five/kg'"
    ):
        make_engine("postgresql://kg:hunter2@db:five/kg")

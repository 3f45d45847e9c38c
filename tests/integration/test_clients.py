"""The clients the commands build: timestamps in responses go through the fast parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.aws.clients import aws_clients
from app.settings import Settings
from tests.conftest import Aws


def test_real_clients_read_s3_times_without_dateutil(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a header (GetObject) and from an XML body (ListObjectsV2): aware, current, equal."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws.s3.create_bucket(Bucket="clients-timestamps")
    aws.s3.put_object(Bucket="clients-timestamps", Key="a.json", Body=b"{}")
    _, s3 = aws_clients(Settings(endpoint_url=aws.endpoint))

    got = s3.get_object(Bucket="clients-timestamps", Key="a.json")["LastModified"]  # a header
    listed = s3.list_objects_v2(Bucket="clients-timestamps")["Contents"][0]["LastModified"]  # XML body

    for value in (got, listed):
        # dateutil's parser would give its own tzutc; the standard library gives timezone.utc.
        assert type(value.tzinfo) is timezone
        assert abs(datetime.now(UTC) - value) < timedelta(minutes=5)
    assert got == listed.replace(microsecond=0)

"""Reading a body under the size cap, inflating gzip as it streams (app.core.decompress)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest

from app.core.decompress import gunzip_capped, looks_gzipped, read_capped
from app.errors import InvalidObjectError

DOCUMENT = b'{"job_success": true, "loss": 0.25}'


def chunked(data: bytes, size: int = 7) -> Iterator[bytes]:
    """``data`` in chunks of ``size`` bytes, as a network body would arrive."""
    return (data[i : i + size] for i in range(0, len(data), size))


def bomb(inflated_bytes: int) -> bytes:
    """A gzip stream of ``inflated_bytes`` zeros, compressed without holding them in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(inflated_bytes // len(block))]
    parts.append(packer.flush())
    return b"".join(parts)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x1f\x8b\x08", True),
        (gzip.compress(b"{}")[:2], True),
        (b'{"a"', False),
        (b"[", False),
        (b"\x1f", False),
        (b"", False),
    ],
)
def test_gzip_is_recognised_by_its_magic_bytes(head: bytes, expected: bool) -> None:
    """Only the gzip magic bytes mark a body as gzip."""
    assert looks_gzipped(head) is expected


@pytest.mark.parametrize("document", [b'{"job_success": true}', b'[{"job_success": 1}]', b' \n{"a": 1}'])
def test_no_json_text_starts_with_the_gzip_magic(document: bytes) -> None:
    """JSON (object, array, leading whitespace) never looks gzipped, whatever its key or label says."""
    assert not looks_gzipped(document)


def test_gzip_inflates_across_small_chunks() -> None:
    """A gzip body split into 7-byte chunks inflates to the original document."""
    assert gunzip_capped(chunked(gzip.compress(DOCUMENT)), max_bytes=1024, what="x") == DOCUMENT


def test_concatenated_gzip_members_are_joined() -> None:
    """Two gzip members back to back (as `cat a.gz b.gz` makes) inflate to both parts."""
    data = gzip.compress(b'{"job_success": ') + gzip.compress(b"true}")
    assert gunzip_capped(chunked(data, 5), max_bytes=1024, what="x") == b'{"job_success": true}'


def test_inflated_size_exactly_at_the_cap_is_accepted() -> None:
    """The cap is inclusive: max_bytes of output is fine, one more is not."""
    data = gzip.compress(DOCUMENT)
    assert gunzip_capped([data], max_bytes=len(DOCUMENT), what="x") == DOCUMENT
    with pytest.raises(InvalidObjectError) as caught:
        gunzip_capped([data], max_bytes=len(DOCUMENT) - 1, what="s3://b/k")
    assert caught.value.reason == "object-too-large"
    assert "s3://b/k" in str(caught.value)


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    """64 MiB of zeros compressed to ~64 KB is refused at a 1 MiB cap using a few MiB of memory."""
    data = bomb(64 * 1024 * 1024)
    assert len(data) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(InvalidObjectError) as caught:
            gunzip_capped(chunked(data, 64 * 1024), max_bytes=1024 * 1024, what="x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "object-too-large"
    assert peak < 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (gzip.compress(DOCUMENT)[:-6], "truncated"),
        (gzip.compress(DOCUMENT)[:10], "truncated"),
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "not a valid gzip"),
        (gzip.compress(DOCUMENT) + b"trailing junk", "after the end"),
        (b"", "empty"),
        (DOCUMENT, "not a valid gzip"),
    ],
    ids=["cut-trailer", "header-only", "corrupt", "trailing-junk", "empty", "plain-json"],
)
def test_broken_gzip_is_invalid_with_a_reason(data: bytes, words: str) -> None:
    """Truncated, corrupt, padded or empty gzip streams are invalid-gzip, never partial output."""
    with pytest.raises(InvalidObjectError) as caught:
        gunzip_capped(chunked(data), max_bytes=1024, what="s3://b/k.gz")
    assert caught.value.reason == "invalid-gzip"
    assert words in str(caught.value)


def test_plain_read_stops_past_the_cap() -> None:
    """Uncompressed bodies are joined up to the cap and refused one byte past it."""
    assert read_capped(chunked(DOCUMENT), max_bytes=len(DOCUMENT), what="x") == DOCUMENT
    with pytest.raises(InvalidObjectError) as caught:
        read_capped(chunked(DOCUMENT), max_bytes=len(DOCUMENT) - 1, what="x")
    assert caught.value.reason == "object-too-large"

"""Reading an object body under a size cap, inflating gzip on the way (pure: no I/O of its own).

The cap applies to the bytes the parser will see, so for a gzip object it is the *decompressed*
size. The body is consumed chunk by chunk and inflation stops as soon as the output passes the cap:
a small object that inflates to gigabytes (a "zip bomb") costs at most ``max_bytes`` of memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from app.errors import InvalidObjectError

GZIP_MAGIC = b"\x1f\x8b"
# zlib's wbits for "a gzip header and trailer" (16 + the largest window).
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def looks_gzipped(head: bytes) -> bool:
    """Whether a body is gzip, judged by its first bytes (the gzip magic, RFC 1952).

    A ``.gz`` key or ``Content-Encoding: gzip`` is only a hint: producers label plain JSON that way
    (and some HTTP tools store gzip without either). JSON text cannot start with byte 0x1f, so the
    magic bytes decide without ambiguity; a real gzip stream cut short still starts with them and
    stays ``invalid-gzip``.
    """
    return head.startswith(GZIP_MAGIC)


def read_capped(chunks: Iterable[bytes], *, max_bytes: int, what: str) -> bytes:
    """Join ``chunks`` as they are; ``object-too-large`` once they pass ``max_bytes``."""
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > max_bytes:
            raise InvalidObjectError(f"{what} is over the {max_bytes}-byte cap", reason="object-too-large")
    return bytes(out)


def gunzip_capped(chunks: Iterable[bytes], *, max_bytes: int, what: str) -> bytes:
    """Inflate a gzip stream (one or more members) from ``chunks``, at most ``max_bytes`` of output.

    Raises :class:`~app.errors.InvalidObjectError`: ``object-too-large`` once the output would pass
    the cap, ``invalid-gzip`` for a corrupt or truncated stream.
    """
    out = bytearray()
    inflater = zlib.decompressobj(_GZIP_WBITS)
    started = False
    try:
        for data in chunks:
            pending = data
            while pending:
                if inflater.eof:
                    # Another member of a concatenated stream; anything else after the end is garbage.
                    if not pending.startswith(GZIP_MAGIC[: len(pending)]):
                        raise InvalidObjectError(
                            f"{what} has data after the end of the gzip stream", reason="invalid-gzip"
                        )
                    inflater = zlib.decompressobj(_GZIP_WBITS)
                started = True
                # Never ask for more than one byte past the cap, so a bomb stops here.
                out += inflater.decompress(pending, max_bytes + 1 - len(out))
                if len(out) > max_bytes:
                    raise InvalidObjectError(
                        f"{what} inflates past the {max_bytes}-byte cap", reason="object-too-large"
                    )
                pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    except zlib.error as exc:
        raise InvalidObjectError(f"{what} is not a valid gzip stream: {exc}", reason="invalid-gzip") from None
    if not started:
        raise InvalidObjectError(f"{what} is empty, not a gzip stream", reason="invalid-gzip")
    if not inflater.eof:
        raise InvalidObjectError(f"{what} is a truncated gzip stream", reason="invalid-gzip")
    return bytes(out)

"""Several binary COPY streams joined into one target COPY (table_copy._JoinedStreams): the
catch-up repairs the slices of one target table with one target COPY of their source COPYs."""

import io

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import (
    BINARY_TRAILER, CopyFailed, _JoinedStreams)

HEADER = b'PGCOPY\n\xff\r\n\x00' + b'\x00\x00\x00\x00' + b'\x00\x00\x00\x00'


def _stream(*rows: bytes, extension: bytes = b'') -> bytes:
    header = HEADER[:15] + len(extension).to_bytes(4, 'big') + extension
    return header + b''.join(rows) + BINARY_TRAILER


def _join(streams, chunk: int) -> bytes:
    out = io.BytesIO()
    joined = _JoinedStreams(out, len(streams))
    for i, data in enumerate(streams):
        joined.start(i)
        for start in range(0, len(data), chunk):
            assert joined.write(memoryview(data[start:start + chunk])) == len(data[start:start + chunk])
        joined.end()
    return out.getvalue()


@pytest.mark.parametrize('chunk', [1, 2, 3, 7, 19, 20, 4096])
def test_one_header_every_row_one_trailer(chunk):
    streams = [_stream(b'row-a', b'row-b'), _stream(extension=b'ext!'), _stream(b'row-c')]
    assert _join(streams, chunk) == HEADER + b'row-arow-brow-c' + BINARY_TRAILER


def test_a_stream_without_its_trailer_is_refused():
    out = io.BytesIO()
    joined = _JoinedStreams(out, 2)
    joined.start(0)
    joined.write(HEADER + b'row-a')  # cut short: no trailer
    with pytest.raises(CopyFailed, match='trailer'):
        joined.end()

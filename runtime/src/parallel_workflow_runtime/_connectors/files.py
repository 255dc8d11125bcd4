"""The `file` kind's reading (connectors.py hands it the source): which files a run reads
(FileCursor), and each file's rows, read here rather than by dlt's readers, for two bounds:

- a record (a CSV record, a JSON line) longer than `file.max_record_bytes` fails the source
  as soon as that many bytes are read: pandas' parser holds a whole record, however long (a
  2 GiB file without a line break took a CSV source to 14.5 GiB, dlt's JSONL reader to 2.9);
- with `file.follow_symlinks: false`, a file whose real path is outside the folder (a symbolic
  link, or a glob with ..) is skipped: the path checked is the one of the file descriptor
  opened, so a link swapped in after a check cannot get past it.

dlt still lists the files (its `filesystem` resource: local folders and any fsspec URL).
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import io
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from parallel_workflow_runtime._connectors.connector_imports import dlt_module
from parallel_workflow_runtime._connectors.cursor_tracker import (
    MAX_CURSOR_KEYS,
    decoded,
    encoded,
    shown,
)
from parallel_workflow_runtime._connectors.read_context import Chunks, Notes, flattened
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.connector_config import FileBlock
from parallel_workflow_runtime._core.results import SourceError

FIELD = "modification_date"  # what a file cursor follows (connector_config.cursor_of)


class FileCursor:
    """A file source's cursor: the names of the files read (relative to the folder) that are
    still there, and the latest modification time among the files read.

    A file is read when its name is not among those (whatever its modification time: cp -p,
    rsync -a, tar x and object-store syncs keep the time the file had elsewhere), or when its
    modification time is later than the latest read (it changed since). Past MAX_CURSOR_KEYS
    names, the cursor keeps the newest and the time of the newest it dropped (`files_before`):
    a file whose name is not kept is then read only if it is later than that, which a warning
    says.

    A cursor kept by 0.8.0 has no names: its next run reads as 0.8.0 did (the files after its
    time, and those at it not `seen`), and keeps the names from then on.
    """

    def __init__(self, start: dict[str, Any] | None, block: FileBlock, notes: Notes) -> None:
        self.start = start
        self.block = block
        self.notes = notes
        value = (start or {}).get("value")
        self.start_value: datetime.datetime | None = None if value is None else decoded(value)
        self.known: set[str] = set((start or {}).get("files", ()))
        self.legacy = start is not None and "files" not in start  # kept by 0.8.0
        self.legacy_seen = set((start or {}).get("seen", ())) if self.legacy else set()
        before = (start or {}).get("files_before")
        self.before: datetime.datetime | None = None if before is None else decoded(before)
        self.high = self.start_value
        # Every file listed this time that is not skipped, with its modification time: the
        # names the cursor keeps next (those read before and gone since drop out).
        self.listed: dict[str, datetime.datetime] = {}

    def admit(self, item: dict[str, Any]) -> bool:
        """Whether the file `item` (dlt's FileItem) is to be read."""
        name, mtime = item["relative_path"], item["modification_date"]
        self.listed[name] = mtime
        start = self.start_value
        if start is not None and mtime > start:  # new, or changed since the last read
            read = True
        elif name in self.known:
            read = False
        elif self.legacy:
            read = start is None or (mtime == start and item["file_url"] not in self.legacy_seen)
        else:  # a name never read: read, unless the names older than `before` were dropped
            read = self.before is None or mtime > self.before
        if read and (self.high is None or mtime > self.high):
            self.high = mtime
        return read

    def forget(self, item: dict[str, Any]) -> None:
        """A file listed but not read after all (it leads out of the folder)."""
        self.listed.pop(item["relative_path"], None)

    def state(self) -> dict[str, Any] | None:
        if self.high is None and not self.listed:
            return self.start
        names = sorted(self.listed)
        before = None
        if len(names) > MAX_CURSOR_KEYS:
            newest = sorted(self.listed, key=lambda name: (self.listed[name], name), reverse=True)
            names = sorted(newest[:MAX_CURSOR_KEYS])
            before = max(self.listed[name] for name in newest[MAX_CURSOR_KEYS:])
            self.notes.warn(
                f"file: {len(self.listed):,} files match {self.block.glob} in {self.block.path}:"
                f" the cursor keeps the names of the newest {MAX_CURSOR_KEYS:,}, so a file that"
                f" arrives with a modification time at or before {shown(encoded(before))}"
                " (cp -p, rsync -a, tar x) is not read; move the files read out of the folder"
                " to stay under that"
            )
        state: dict[str, Any] = {"field": FIELD, "value": encoded(self.high), "files": names}
        if before is not None:
            state["files_before"] = encoded(before)
        return state


def file_bucket_url(source: Source, block: FileBlock) -> str:
    """Where a file source's files are, as dlt's filesystem takes it: a URL as written, or a
    folder (relative to the workflow's folder) that must exist."""
    if "://" in block.path:
        return block.path
    folder = source.folder / block.path
    if not folder.is_dir():
        raise SourceError(f"file: the folder {block.path} does not exist")
    return str(folder.resolve())


def file_chunks(source: Source, block: FileBlock, files: FileCursor | None, notes: Notes) -> Chunks:
    """The rows of the files a run reads (all of them without a cursor), file by file, in
    lists of at most `chunk_size`."""
    dlt_module("file")
    from dlt.sources.filesystem import filesystem

    bucket_url = file_bucket_url(source, block)
    folder = None if "://" in block.path else os.path.realpath(bucket_url)
    listed = 0
    outside: list[str] = []
    for item in flattened(filesystem(bucket_url=bucket_url, file_glob=block.glob)):
        listed += 1
        if files is not None and not files.admit(item):
            continue
        with opened(item, folder, block.follow_symlinks) as stream:
            if stream is None:
                outside.append(item["relative_path"])
                if files is not None:
                    files.forget(item)
                continue
            yield from rows_of(stream, item["relative_path"], block)
    if outside:
        notes.warn(leading_out(sorted(outside), block.path))
    if not listed:
        raise SourceError(f"file: no file in {block.path} matches {block.glob!r}")


def leading_out(names: list[str], path: str) -> str:
    files = f"{len(names)} file that leads" if len(names) == 1 else f"{len(names)} files that lead"
    shown_names = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
    return (
        f"file: skipped {files} out of {path} (symbolic links, or a glob with ..): {shown_names};"
        " file.follow_symlinks is false"
    )


@contextlib.contextmanager
def opened(
    item: dict[str, Any], folder: str | None, follow_symlinks: bool
) -> Iterator[BinaryIO | None]:
    """The file `item` open for reading (decompressed if it is gzip), or None if it is outside
    `folder` while symbolic links are not to be followed. `folder` None: a URL, which fsspec
    opens."""
    if folder is None:
        with item.open() as remote:  # type: ignore[attr-defined]  # dlt's FileItemDict
            yield remote
        return
    descriptor = os.open(item.local_file_path, os.O_RDONLY)  # type: ignore[attr-defined]
    with os.fdopen(descriptor, "rb") as local:
        if not follow_symlinks and not is_inside(descriptor, folder):
            yield None
        elif item.get("encoding") == "gzip":
            with gzip.GzipFile(fileobj=local) as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield local


def is_inside(descriptor: int, folder: str) -> bool:
    """Whether the file open as `descriptor` is in `folder` (a real path): where the
    descriptor leads (Linux says it in /proc), not where its name did before it was opened."""
    try:
        real = os.readlink(f"/proc/self/fd/{descriptor}")
    except OSError:  # no /proc: the name's real path, the best there is
        real = os.path.realpath(f"/dev/fd/{descriptor}")
    return os.path.commonpath([real, folder]) == folder


def rows_of(stream: BinaryIO, name: str, block: FileBlock) -> Chunks:
    if block.format == "csv":
        return csv_rows(stream, name, block)
    if block.format == "jsonl":
        return jsonl_rows(stream, name, block)
    return parquet_rows(stream, block)


def csv_rows(stream: BinaryIO, name: str, block: FileBlock) -> Chunks:
    """A CSV file's rows as dlt's read_csv gives them (pandas, the header inferred), each
    record within max_record_bytes."""
    import pandas  # type: ignore[import-untyped]

    bounded = io.BufferedReader(BoundedRecords(stream, block.max_record_bytes, name))
    for frame in pandas.read_csv(bounded, header="infer", chunksize=block.chunk_size):
        yield frame.to_dict(orient="records")


# How much of a JSON Lines file is read at once: its lines are split and parsed a block at a
# time (a readline() per line cost a quarter more than dlt's reader).
JSONL_BLOCK = 1 << 20


def jsonl_rows(stream: BinaryIO, name: str, block: FileBlock) -> Chunks:
    """A JSON Lines file's items, parsed as dlt's read_jsonl parses them, no line read past
    max_record_bytes (blank lines skipped)."""
    from dlt.common import json

    loads, limit, size = json.loadb, block.max_record_bytes, block.chunk_size
    items: list[Any] = []
    offset = 0  # where the line not yet ended starts
    tail: list[bytes] = []  # that line's bytes so far
    while data := stream.read(JSONL_BLOCK):
        end = data.rfind(b"\n")
        if end < 0:  # the line goes on
            tail.append(data)
            if sum(map(len, tail)) > limit:
                raise SourceError(too_long(name, limit, offset, "line"))
            continue
        head = b"".join([*tail, data[:end]])
        lines = head.split(b"\n")
        if max(map(len, lines)) > limit:
            longest = max(range(len(lines)), key=lambda index: len(lines[index]))
            at = offset + sum(len(line) + 1 for line in lines[:longest])
            raise SourceError(too_long(name, limit, at, "line"))
        items += [loads(line) for line in lines if line.strip()]
        offset += len(head) + 1
        tail = [data[end + 1 :]]
        while len(items) >= size:
            yield items[:size]
            items = items[size:]
    last = b"".join(tail)
    if len(last) > limit:
        raise SourceError(too_long(name, limit, offset, "line"))
    if last.strip():
        items.append(loads(last))
    if items:
        yield items


def parquet_rows(stream: BinaryIO, block: FileBlock) -> Chunks:
    """A Parquet file's rows as Arrow record batches, as it stores them: `rows.batches()` hands
    them on as they are, `for row in rows` makes them dicts."""
    from pyarrow import parquet  # type: ignore[import-untyped]

    yield from parquet.ParquetFile(stream).iter_batches(batch_size=block.chunk_size)


def too_long(name: str, limit: int, offset: int, what: str) -> str:
    unclosed = " (an unclosed quote makes the rest of a CSV file one record)"
    return (
        f"file: {name} has a {what} longer than {limit:,} bytes (file.max_record_bytes) at byte"
        f" {offset:,}: raise file.max_record_bytes if such {what}s are expected"
        f"{unclosed if what == 'record' else ''}"
    )


class BoundedRecords(io.RawIOBase):
    """A CSV file's bytes as they are, failing once a record grows past `limit` bytes.

    A record ends at a line break outside quotes (CR, LF or both): with pandas' dialect
    (`"` quotes, doubled inside a quoted field), that is where the quotes read so far are
    even. Each read is at most `limit` bytes, so a record inside one read is never too long:
    only the first and the last record end of each read are looked for, a few `find`s per
    read, however many rows it holds. (A quote inside an unquoted field, which pandas reads
    as a character, shifts that count: a stretch of `limit` bytes without another quote then
    fails a file pandas could read; raise the limit for such a file.)"""

    def __init__(self, raw: BinaryIO, limit: int, name: str) -> None:
        self._raw, self._limit, self._name = raw, limit, name
        self._quoted = False  # inside quotes at the end of what was read
        self._offset = 0  # bytes read so far
        self._record = 0  # where the record being read started

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(min(len(view), self._limit))
        size = len(data)
        view[:size] = data
        if size:
            self._check(data)
        return size

    def _check(self, data: bytes) -> None:
        ends = record_ends(data, self._quoted)
        if data.count(b'"') % 2:
            self._quoted = not self._quoted
        start = self._offset
        self._offset += len(data)
        if ends is None:  # the record goes on
            if self._offset - self._record > self._limit:
                raise SourceError(too_long(self._name, self._limit, self._record, "record"))
            return
        first, last = ends
        if start + first - self._record > self._limit:
            raise SourceError(too_long(self._name, self._limit, self._record, "record"))
        self._record = start + last + 1


def record_ends(data: bytes, quoted: bool) -> tuple[int, int] | None:
    """The first and the last line break of `data` outside quotes, `quoted` telling whether
    it starts inside them; None if there is none. Quotes split `data` into stretches that are
    alternately inside and outside: each is looked at with one `find`, not byte by byte."""
    if b"\n" not in data and b"\r" not in data:
        return None
    if b'"' not in data:
        return None if quoted else (first_break(data, 0, len(data)), last_break(data, 0, len(data)))
    first = None
    start, inside = 0, quoted
    while first is None:
        quote = data.find(b'"', start)
        end = len(data) if quote < 0 else quote
        if not inside:
            found = first_break(data, start, end)
            first = found if found >= 0 else None
        if quote < 0:
            break
        start, inside = quote + 1, not inside
    if first is None:
        return None
    end, inside = len(data), quoted != bool(data.count(b'"') % 2)  # the state at the end
    while True:
        quote = data.rfind(b'"', 0, end)
        start = quote + 1
        if not inside:
            found = last_break(data, start, end)
            if found >= 0:
                return first, found
        if quote < 0:  # cannot be: the first break is outside quotes, and before this
            return first, first
        end, inside = quote, not inside


def first_break(data: bytes, start: int, end: int) -> int:
    found = (data.find(b"\n", start, end), data.find(b"\r", start, end))
    return min((index for index in found if index >= 0), default=-1)


def last_break(data: bytes, start: int, end: int) -> int:
    return max(data.rfind(b"\n", start, end), data.rfind(b"\r", start, end))


def files_reached(source: Source, block: FileBlock) -> str:
    from dlt.sources.filesystem import filesystem

    bucket_url = file_bucket_url(source, block)
    # The listing only: dlt's filesystem resource yields the files' names, dates and sizes.
    count = sum(
        len(chunk) if isinstance(chunk, list) else 1
        for chunk in filesystem(bucket_url=bucket_url, file_glob=block.glob)
    )
    if not count:
        raise SourceError(f"file: no file in {block.path} matches {block.glob!r}")
    return f"{block.path}: {count} {'file matches' if count == 1 else 'files match'} {block.glob}"

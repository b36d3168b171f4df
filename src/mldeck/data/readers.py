"""Opening a data file lazily, and turning what polars refuses into reasons a person can act on.

Reading never trusts the file: the format is taken from the suffix or the first bytes, a CSV's
header is parsed separately (polars silently renames duplicate names and reads a wrongly separated
file as one column), a Parquet file must end with its footer.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import polars as pl

from mldeck.errors import MldeckError
from mldeck.formatting import size as shown_size

SNIFF_BYTES = 64 * 1024
# The longest CSV header line read: a file of tens of thousands of columns has a header longer
# than SNIFF_BYTES, and a name cut at that limit would be taken for another one.
HEADER_BYTES = 16 * 1024 * 1024
BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark
FORMATS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".ndjson": "ndjson", ".jsonl": "ndjson",
}  # fmt: skip
OTHER_SEPARATORS = (";", "\t", "|", ",")
INFER_ROWS = 10_000  # rows a CSV's or NDJSON's column types are inferred from
# polars' words for a CSV value that does not fit the type inferred from the first rows
_MISREAD = re.compile(
    r"could not parse `.*?` as dtype `[^`]*` at column '(?P<column>.*)' \(column number", re.S
)
STORED_TYPES = {"String": pl.String(), "Int64": pl.Int64(), "Float64": pl.Float64()}
T = TypeVar("T")


def unsupported_type(path: Path) -> str | None:
    """Why *path* is not a data file mldeck reads, judged by its suffix (a file without one is
    read by its first bytes); None when it is one."""
    suffix = path.suffix.lower()
    if not suffix or suffix in FORMATS:
        return None
    return (f"not a data file mldeck reads ({suffix!r}; it reads CSV: .csv .tsv .txt, Parquet: "
            ".parquet .pq, NDJSON: .ndjson .jsonl, or a file without a suffix by its content)")  # fmt: skip


class ReadError(Exception):
    """The file cannot be read as a table; ``str()`` says why, in one line."""


@dataclass(frozen=True)
class Source:
    """A data file opened lazily: the plan reads it only when collected."""

    path: Path
    file_format: str
    frame: pl.LazyFrame
    columns: list[str]
    schema: dict[str, pl.DataType]
    separator: str = ","
    types: Mapping[str, pl.DataType] | None = None
    as_text: frozenset[str] = frozenset()

    def why(self, exc: BaseException) -> str:
        """One line for an error polars raised while reading this file."""
        return explain(exc, self.file_format, self.path, self.separator)

    def misread(self, exc: BaseException) -> Source | None:
        """This CSV opened again with the column named in *exc* read as text, when *exc* is
        polars finding a value unlike the first rows' type (an int column with ``1.5`` or
        ``n/a`` past row 10,000); None for any other error."""
        found = _MISREAD.search(str(exc)) if self.file_format == "csv" else None
        column = found["column"] if found else None
        if column is None or column not in self.schema or column in self.as_text:
            return None
        return open_source(self.path, separator=self.separator, types=self.types,
                           as_text=self.as_text | {column})  # fmt: skip

    def read(self, run: Callable[[Source], T]) -> tuple[T, Source]:
        """``run(source)``, run again with each column polars misread as text (see
        :meth:`misread`); what it returned and the source it ran on."""
        source = self
        while True:
            try:
                return run(source), source
            except Exception as exc:
                again = source.misread(exc)
                if again is None:
                    raise
                source = again


def stored_types(schema: Mapping[str, str]) -> dict[str, pl.DataType]:
    """The types to read a stored CSV version with, from the schema its validation recorded:
    a column polars would infer otherwise from the first rows is read as it was validated."""
    return {name: STORED_TYPES[dtype] for name, dtype in schema.items() if dtype in STORED_TYPES}


def _ends_as_parquet(path: Path) -> bool:
    """Whether *path* ends with Parquet's footer marker too (a CSV whose first column is named
    PAR1_score begins like one)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            return fh.read(4) == b"PAR1"
    except OSError:  # shorter than 4 bytes, a pipe
        return False


def detect_format(path: Path, head: bytes) -> str:
    """``csv``, ``parquet`` or ``ndjson``, from the suffix, else from the first bytes; a Parquet
    file under another suffix by its magic bytes (it was read as text: "not UTF-8 text: byte
    0xc0"): it begins and ends with PAR1."""
    if head.startswith(b"PAR1") and _ends_as_parquet(path):
        return "parquet"
    by_suffix = FORMATS.get(path.suffix.lower())
    if by_suffix:
        return by_suffix
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip().startswith(b"{"):
        return "ndjson"
    return "csv"


def separator_for(path: Path, separator: str) -> str:
    """The separator a CSV at *path* is read with: a ``.tsv`` file given the default ``,`` is
    read with a tab (its name says so); any other separator is used as given."""
    return "\t" if separator == "," and path.suffix.lower() == ".tsv" else separator


def check_separator(separator: str) -> str:
    """A separator given on the command line: one character (a tab is $'\\t' in the shell)."""
    if len(separator) != 1:
        hint = " (a tab: --separator $'\\t')" if separator == "\\t" else ""
        raise MldeckError(f"a CSV separator is one character, not {separator!r}{hint}")
    return separator


SET_SEPARATOR = "(set [data] csv_separator)"  # what a file read with [data]'s separator says


def open_source(
    path: Path,
    *,
    separator: str = ",",
    types: Mapping[str, pl.DataType] | None = None,
    as_text: Iterable[str] = (),
) -> Source:
    """Open *path* for a lazy scan; raise ReadError naming what is wrong with it.

    A CSV's columns named in *types* are read as those types, those in *as_text* as text; the
    others' types are inferred from the first rows."""
    as_text = frozenset(as_text)
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode) and not stat.S_ISDIR(status.st_mode):
            # A pipe (`<(cmd)`) has no size and is read once; opening a named pipe nobody
            # writes to waits forever.
            raise ReadError("it is not a regular file (a pipe or a device): save it to a file")
        size = status.st_size
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise ReadError("the file disappeared before it could be read") from None
    except IsADirectoryError:
        raise ReadError("it is a folder, not a file") from None
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}") from None
    if size == 0:
        raise ReadError("empty file (0 bytes)")
    file_format = detect_format(path, head)
    if file_format == "parquet":
        frame = _open_parquet(path, size)
    elif file_format == "ndjson":
        _check_text(head, size)
        frame = _scan_ndjson(path, bom=head.startswith(BOM))
    else:
        separator = separator_for(path, separator)
        _check_text(head, size)
        names = _check_header(_header_line(path, head, size), separator)
        overrides = {**(types or {}), **dict.fromkeys(as_text, pl.String())}
        frame = pl.scan_csv(
            path,
            glob=False,
            separator=separator,
            infer_schema_length=INFER_ROWS,
            schema_overrides={n: t for n, t in overrides.items() if n in names} or None,
            raise_if_empty=False,
            try_parse_dates=True,
        )
        # polars reads a blank line (a file ending in two line breaks, a gap between blocks) as
        # a row of nulls; like other CSV readers, mldeck skips it. A line of separators only
        # carries no value either and goes with it. The test is a column first, then filtered
        # on: as a filter over every column, polars' predicate pushdown takes seconds per
        # thousand columns squared (minutes for a file of 10,000 columns).
        kept = "_mldeck_kept"
        while kept in names:
            kept = "_" + kept
        frame = (
            frame.with_columns(pl.any_horizontal(pl.all().is_not_null()).alias(kept))
            .filter(pl.col(kept))
            .drop(kept)
        )
    try:
        schema = dict(frame.collect_schema())
    except Exception as exc:  # polars raises many types here; all mean "unreadable"
        raise ReadError(explain(exc, file_format, path, separator)) from None
    return Source(path, file_format, frame, list(schema), schema, separator, types, as_text)


def _scan_ndjson(path: Path, *, bom: bool) -> pl.LazyFrame:
    """An NDJSON scan; a file starting with a UTF-8 byte order mark (as some Windows tools write
    it) is scanned from the byte after it, which polars would otherwise take for bad JSON."""
    if not bom:
        return pl.scan_ndjson(_literal(path), infer_schema_length=INFER_ROWS)
    with open(path, "rb") as fh:  # polars maps the file from here; the handle can close
        fh.seek(len(BOM))
        return pl.scan_ndjson(fh, infer_schema_length=INFER_ROWS)


def _literal(path: Path) -> str:
    """*path* as a pattern matching only itself: polars expands glob characters in the paths it
    scans (a folder named 'run [old]' would match nothing), and ``scan_ndjson`` cannot be told
    not to; the other readers are given ``glob=False``."""
    return re.sub(r"([\[\]*?])", r"[\1]", str(path))


def _open_parquet(path: Path, size: int) -> pl.LazyFrame:
    with open(path, "rb") as fh:
        if size < 12:
            raise ReadError("truncated Parquet file (too short to hold a footer)")
        fh.seek(-4, io.SEEK_END)
        if fh.read(4) != b"PAR1":
            raise ReadError("truncated or damaged Parquet file (its footer is missing)")
    return pl.scan_parquet(path, glob=False)


def _check_text(head: bytes, size: int) -> None:
    """Refuse bytes that are not UTF-8 (a multi-byte character cut at the sniff limit is fine)."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not (len(head) == SNIFF_BYTES < size and exc.start >= len(head) - 4):
            raise ReadError(
                f"not UTF-8 text: byte 0x{head[exc.start]:02x} at offset {exc.start} "
                "(re-save the file as UTF-8)"
            ) from None


def _header_line(path: Path, head: bytes, size: int) -> bytes:
    """The file's first line, read beyond *head* when it does not end there (a header of many
    columns); ReadError when it is longer than HEADER_BYTES."""
    if b"\n" in head or b"\r" in head or len(head) >= size:
        return head
    try:
        with open(path, "rb") as fh:
            start = fh.read(HEADER_BYTES)
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}") from None
    ends = [at for at in (start.find(b"\n"), start.find(b"\r")) if at >= 0]
    if ends:
        return start[: min(ends)]
    if len(start) < size:
        raise ReadError(f"the first line is longer than {shown_size(HEADER_BYTES)}: no CSV header")
    return start


def _check_header(head: bytes, separator: str) -> list[str]:
    """The header's names; ReadError when they cannot be a table's."""
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")  # polars skips a BOM too
    ending = re.search(r"\r\n|\r|\n", text)
    if ending is not None and ending.group() == "\r" and ending.end() < len(text):
        # polars ends a line at \n only: the whole file would read as one header line, and the
        # rejection would list "unexpected columns" made of the rows' values.
        raise ReadError(
            "its lines end with a carriage return alone (old Mac line endings), which is not "
            "read as a line break; convert them to \\n (for instance: tr '\\r' '\\n')"
        )
    first = text.splitlines()[0] if text.strip() else ""
    if not first.strip():
        raise ReadError("the first line is empty: no header")
    names = next(csv.reader([first], delimiter=separator))
    if len(names) == 1:
        for other in OTHER_SEPARATORS:
            if other != separator and other in names[0]:
                shown = "\\t" if other == "\t" else other
                raise ReadError(
                    f"one column named {names[0][:60]!r}: the file looks '{shown}'-separated "
                    f"{SET_SEPARATOR}"
                )
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise ReadError(f"duplicate column name {name!r} (columns {seen[name]} and {position})")
        seen[name] = position
    if any(not name.strip() for name in names):
        raise ReadError("a column has an empty name in the header")
    return names


RAGGED_SEARCH_RECORDS = 2_000_000  # records read, on the error's path only, to find the line


def _first_long_record(path: Path, separator: str) -> str | None:
    """Where the first record with more fields than the header is (polars does not say)."""
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh, delimiter=separator)
            header = next(reader, None) or []
            for count, record in enumerate(reader):
                if len(record) > len(header):
                    return (f"line {reader.line_num} has {len(record)} fields, the header "
                            f"{len(header)}")  # fmt: skip
                if count >= RAGGED_SEARCH_RECORDS:
                    break
    except (OSError, csv.Error):
        pass
    return None


@dataclass(frozen=True)
class ShortRecords:
    """A CSV's records with fewer fields than its header: polars reads their missing fields as
    nulls, so a row cut short would pass for one with empty values."""

    count: int
    first_line: int  # 1-based, the header being line 1
    first_fields: int
    cut_short: bool  # the last line is one of them, and the file ends without a line break

    def describe(self, fields: int) -> str:
        rows = "1 row has" if self.count == 1 else f"{self.count} rows have"
        said = (f"{rows} fewer fields than the header's {fields}: line {self.first_line} has "
                f"{self.first_fields}")  # fmt: skip
        if self.cut_short:
            which = "it is the last line" if self.count == 1 else "the last line is one of them"
            said += (f"; {which} and ends without a line break: the file looks cut short "
                     "(copied while still being written?)")  # fmt: skip
        return said


def short_records(path: Path, separator: str, fields: int) -> ShortRecords | None:
    """The records of the CSV at *path* with fewer than *fields* fields, None when there are none.

    Lines are read whole by polars and their separators counted outside quoted text (only the
    lines holding a quote, or too few separators, are looked at closely). A file where a quoted
    field spans lines is read record by record with Python's CSV reader instead (slower; only
    such files). Blank lines, and lines of separators only, are not records (mldeck skips them
    as rows)."""
    unit = "\x1e" if separator == "\x1f" else "\x1f"
    line, number = pl.col("line"), pl.col("number")
    quotes, raw = pl.col("quotes"), pl.col("raw")
    try:
        lines = pl.scan_csv(path, has_header=False, separator=unit, quote_char=None,
                            schema={"line": pl.String()}, truncate_ragged_lines=True,
                            raise_if_empty=False, encoding="utf8-lossy")  # fmt: skip
        looked_at = (
            lines.with_row_index("number", offset=1)
            .with_columns(quotes=line.str.count_matches('"', literal=True),
                          raw=line.str.count_matches(separator, literal=True) + 1)
            .filter((number > 1) & line.is_not_null() & ((raw < fields) | (quotes > 0)))
        )  # fmt: skip
        # A field quoted from its start is taken out whole, separators inside and doubled quotes
        # too; a quote inside an unquoted field (12" screen) is a character like any other.
        sep = "\\t" if separator == "\t" else re.escape(separator)
        outside = (line.str.replace_all(f'(^|{sep})"(?:[^"]|"")*"', "${1}")
                   .str.count_matches(separator, literal=True) + 1)  # fmt: skip
        blank = (quotes == 0) & (line.str.strip_chars(separator) == "")
        counted, short = pl.col("counted"), pl.col("short")
        found = (
            looked_at.with_columns(counted=pl.when(quotes > 0).then(outside).otherwise(raw))
            .with_columns(short=(counted < fields) & ~blank)  # columns: computed once a line
            .select(odd=(quotes % 2 == 1).any(), count=short.sum(),
                    first=number.filter(short).first(),
                    first_fields=counted.filter(short).first())
            .collect(engine="streaming").row(0, named=True)
        )  # fmt: skip
    except (pl.exceptions.PolarsError, OSError):
        return None
    if found["odd"]:  # a quoted field holds a line break: lines are not records
        return _short_records_slowly(path, separator, fields)
    if not found["count"]:
        return None
    return ShortRecords(int(found["count"]), int(found["first"]), int(found["first_fields"]),
                        _cut_short(path, separator, fields))  # fmt: skip


def _short_records_slowly(path: Path, separator: str, fields: int) -> ShortRecords | None:
    count = first_line = first_fields = 0
    last_short = False
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh, delimiter=separator)
            next(reader, None)
            start = reader.line_num + 1
            for record in reader:
                last_short = 0 < len(record) < fields and any(record)
                if last_short:
                    count += 1
                    if count == 1:
                        first_line, first_fields = start, len(record)
                start = reader.line_num + 1
    except (OSError, csv.Error):
        return None
    if not count:
        return None
    return ShortRecords(count, first_line, first_fields,
                        last_short and not _ends_with_line_break(path))  # fmt: skip


def _ends_with_line_break(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) in (b"\n", b"\r")
    except OSError:
        return True


def _cut_short(path: Path, separator: str, fields: int) -> bool:
    """Whether the file ends without a line break on a line of fewer than *fields* fields."""
    if _ends_with_line_break(path):
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - SNIFF_BYTES))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return False
    last = tail.rsplit("\n", 1)[-1]
    try:
        return len(next(csv.reader([last], delimiter=separator), [])) < fields
    except csv.Error:
        return False


def _first_stray_quote(path: Path, separator: str) -> str | None:
    """Where the first quote polars cannot read is: inside a field that is not quoted
    (``12" screen``), text after a field's closing quote (``"a"b``), or a quote never closed.
    Read as CSV quoting reads it (a quoted field may hold separators, line breaks and doubled
    quotes), over the first RAGGED_SEARCH_RECORDS lines."""
    quoted = closed = False  # inside a quoted field; just after its closing quote
    start = True  # at the start of a field
    opened = 0  # the line a quoted field opened on
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            for number, line in enumerate(fh, start=1):
                if number > RAGGED_SEARCH_RECORDS:
                    return None
                position, end = 0, len(line)
                while position < end:
                    char = line[position]
                    if quoted:
                        if char == '"':
                            if line[position + 1 : position + 2] == '"':
                                position += 1  # a doubled quote: one quote of the text
                            else:
                                quoted, closed = False, True
                    elif char in "\r\n" or char == separator:
                        start, closed = True, False
                    elif closed:
                        return f"line {number}: text after a closing quote"
                    elif char == '"':
                        if not start:
                            return f"line {number}: a quote inside a field that is not quoted"
                        quoted, opened, start = True, number, False
                    else:
                        start = False
                    position += 1
    except OSError:
        return None
    return f"line {opened}: a quote opened and never closed" if quoted else None


def _first_bad_json_line(path: Path) -> str | None:
    """Which line of an NDJSON file is not a JSON object, and why (polars counts characters
    from a point it does not name)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            for number, line in enumerate(fh, start=1):
                if number > RAGGED_SEARCH_RECORDS:
                    break
                if not line.strip():
                    continue
                try:
                    value = json.loads(line.rstrip("\r\n"))
                except ValueError as exc:
                    return f"line {number}: {exc.msg} (column {exc.colno})"
                if not isinstance(value, dict):
                    return f"line {number} is a JSON {type(value).__name__}, not an object"
    except OSError:
        pass
    return None


def explain(
    exc: BaseException, file_format: str, path: Path | None = None, separator: str = ","
) -> str:
    """One line for an error polars raised while reading (*path*: the file, for a closer look
    at a CSV's ragged rows)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lower = text.lower()
    if isinstance(exc, FileNotFoundError) or "no such file" in lower:
        return "the file disappeared before it could be read"
    if "utf-8" in lower or "utf8" in lower:
        return "not UTF-8 text (re-save the file as UTF-8)"
    if "found more fields" in lower or "more fields than" in lower:
        where = _first_long_record(path, separator) if path and file_format == "csv" else None
        return f"a row has more fields than the header (ragged rows): {where or text[:160]}"
    if file_format == "parquet" and ("eof" in lower or "out of spec" in lower or "footer" in lower):
        return f"truncated or damaged Parquet file: {text[:160]}"
    if file_format == "ndjson":
        return f"not valid NDJSON: {(path and _first_bad_json_line(path)) or text[:160]}"
    whole = str(exc)
    if file_format == "csv" and ("not properly escaped" in whole or "csv malformed" in lower):
        # polars' cause is at the end of its message, without a line number (or absent)
        where = path and _first_stray_quote(path, separator)
        field = re.search(r"Field `([^`\n]{0,60})", whole)
        near = where or (f"near {field.group(1)!r}" if field else text[:160])
        return (f"a quote the CSV reader cannot read, {near} (a field holding quotes is quoted "
                'whole and its quotes doubled: "12"" screen")')  # fmt: skip
    return f"cannot read the {file_format.upper()} file: {text[:200]}"


def open_elsewhere(path: Path) -> bool:
    """Whether another process holds *path* open (a writer still at it, or paused longer than
    the watcher's settle window): on Linux a write lease cannot be taken then. False where
    leases are not to be had (other systems, a file of another owner, some filesystems): the
    settle window decides."""
    set_lease = getattr(fcntl, "F_SETLEASE", None)
    if set_lease is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        try:
            fcntl.fcntl(fd, set_lease, fcntl.F_WRLCK)
        except OSError as exc:
            return exc.errno in (errno.EAGAIN, errno.EBUSY)
        fcntl.fcntl(fd, set_lease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)

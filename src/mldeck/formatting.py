"""Human formatting shared by the CLI and the console (times in local time, sizes, durations)."""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, datetime, timedelta


def when(value: datetime | None) -> str:
    """A stored UTC time in the local time zone, to the second."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def when_text(text: str) -> str:
    """A time written as ISO text (a note's) as ``when`` shows it; other text as it is."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return when(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def when_short(value: datetime | None) -> str:
    """A stored UTC time in the local time zone, month, day and minute: for lists on narrow
    terminals, beside which the full time is one key away."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%m-%d %H:%M")


def duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = max(value.total_seconds(), 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TB"


def number(value: float | None) -> str:
    """A metric value: compact, never scientific notation for everyday magnitudes."""
    if value is None:
        return "NaN"
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    if 1e-3 <= abs(value) < 1e6:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def share(value: float | None) -> str:
    """A share as a whole percentage, but never one that says all or none when it is not
    (229 runs ok of 230 read "100%" beside "1 failed"): then one decimal, or "<0.1%"/">99.9%"."""
    if value is None:
        return "-"
    text = f"{value:.0%}"
    if (text == "100%" and value < 1) or (text == "0%" and value > 0):
        text = f"{value:.1%}"
        if text == "100.0%":
            return ">99.9%"
        if text == "0.0%":
            return "<0.1%"
    return text


def progress(fraction: float | None, status: str) -> str:
    if status != "running" or fraction is None:
        return ""
    return f"{fraction * 100:.0f}%"


def apart(value: float, other: float, *, digits: int = 0, percent: bool = False) -> tuple[str, str]:
    """*value* and *other* written with *digits* decimals, or as many more as it takes to tell
    them apart (a figure just under its threshold must not read as the threshold): 0.7495 beside
    0.75 is '0.7495' and '0.7500'; a 14.8 % drift share beside 15 % is '14.8%' and '15.0%'."""
    kind = "%" if percent else "f"
    for n in range(digits, digits + 7):
        texts = f"{value:.{n}{kind}}", f"{other:.{n}{kind}}"
        if texts[0] != texts[1] or value == other:
            break
    return texts


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 run``, ``2 runs`` (or *many* for irregular plurals)."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def shown(name: str) -> str:
    """A file name or path as one printable line that can be stored and printed: undecodable
    bytes (a name from another system's encoding) as U+FFFD, control characters as '?'."""
    try:
        text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        text = whole_text(name)
    return "".join("?" if unicodedata.category(ch) == "Cc" else ch for ch in text)


def said(text: str) -> str:
    """A message of several lines as printable text: control characters (an escape that would
    clear the screen, a carriage return) as '?', its line breaks kept."""
    return "\n".join(shown(line) for line in text.split("\n"))


_SURROGATES = re.compile("[\ud800-\udfff]")


def whole_text(text: str) -> str:
    """*text* with every lone surrogate (an undecodable byte of a file name or an argument, as
    Python decodes it) as U+FFFD: text any UTF-8 stream and database takes."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def cut_middle(text: str, width: int) -> str:
    """*text* in *width* characters, cut in the middle: the end of a run's name tells runs
    apart ('drift churn:v31', 'drift churn:v32'), and a cut at the end made them alike."""
    if len(text) <= width:
        return text
    tail = max(1, (width - 1) // 2)
    return text[: max(0, width - 1 - tail)] + "…" + text[-tail:]


def fitted_name(name: str, limit: int = 200) -> str:
    """*name* cut (its stem, keeping the suffix) to at most *limit* bytes of UTF-8: a name built
    from a user's file name plus a prefix or a suffix of ours must still fit the filesystem's
    255-byte limit on a name."""
    if len(name.encode("utf-8", "surrogateescape")) <= limit:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) > 16:
        stem, suffix = name, ""
    room = limit - len(suffix.encode("utf-8", "surrogateescape")) - (1 if suffix else 0) - 1
    cut = stem.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{cut}~" + (f".{suffix}" if suffix else "")


def compared(section: str, key: str, value: object) -> str:
    """A value of a run comparison as text: numbers shortened, a run's time as a duration,
    structures as JSON, "-" for a field the run does not have."""
    import json

    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"  # a metric whose last value was not a number; "-" is a field it lacks
    if section == "run" and key == "seconds" and isinstance(value, int | float):
        return duration(timedelta(seconds=value))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return number(value)

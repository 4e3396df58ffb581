"""Unix-cron expressions as Vertex AI schedules (and Cloud Scheduler) accept them.

Five fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of
week 0-6 or SUN-SAT (7 is Sunday too). Each field is `*` or a comma list of values and
`a-b` ranges, and `*` or a range may take a step `/n` (n >= 1). Cloud Scheduler documents
no `L`, `W`, `#` or `?`, so they are refused here rather than by the service. A day of
month that no listed month has (`0 0 31 2 *`) is refused too: such a schedule would be
accepted and never run. (With both day fields restricted, cron runs on either, so a day of
week keeps such a date's schedule alive.)
"""

from __future__ import annotations

import re

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (name, lowest, highest, names for lowest, lowest + 1, ...)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_ITEM = re.compile(r"^(?P<range>\*|(?P<low>[0-9A-Z]+)(?:-(?P<high>[0-9A-Z]+))?)(?:/(?P<step>[0-9]+))?$")


def cron_problem(expression: str) -> str | None:
    """What is wrong with a five-field cron expression, or None if nothing is.

    Args:
        expression: such as "0 3 * * 1-5".

    Returns:
        One line naming the first bad field and why, such as "minute '61' is not in 0-59".
    """
    fields = expression.split()
    if fields and fields[0].startswith(("TZ=", "CRON_TZ=")):
        return "the time zone goes in schedule.time_zone, not in a TZ= prefix"
    if len(fields) != len(_FIELDS):
        return f"has {len(fields)} fields, not 5"
    for text, (name, low, high, names) in zip(fields, _FIELDS):
        for item in text.split(","):
            problem = _item_problem(item, low, high, names)
            if problem:
                return f"{name} {problem}" if item == text else f"{name} {text!r}: {problem}"
    return _date_problem(fields[2], fields[3], fields[4])


# The most days each month has (February in leap years).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _date_problem(days: str, months: str, weekdays: str) -> str | None:
    # Vixie cron: if either day field starts with `*`, both must match; else either may.
    if not weekdays.startswith("*"):
        return None
    day_values = _values(days, 1, 31, ())
    month_values = _values(months, 1, 12, _MONTHS)
    if any(day <= _MONTH_DAYS[month - 1] for day in day_values for month in month_values):
        return None
    return f"day of month {days!r} never falls in month {months!r}: the schedule would never run"


def _values(text: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """The values a valid field (checked by `_item_problem`) stands for."""
    values = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        start, end = low, high
        if match["range"] != "*":
            start = _value(match["low"], low, names)
            end = _value(match["high"], low, names) if match["high"] else start
        values.update(range(start, end + 1, int(match["step"] or 1)))
    return values


def _item_problem(item: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    match = _ITEM.match(item)
    if match is None and _names_in_lower_case(item, names):
        # Cloud Scheduler documents the names in capitals only.
        return f"{item!r}: write names in capitals ({item.upper()!r})"
    if match is None:
        return f"{item!r} is not *, a value, a range a-b or one of those with /step"
    if match["step"] is not None and int(match["step"]) < 1:
        return f"{item!r} has a step below 1"
    if match["step"] is not None and match["low"] and not match["high"]:
        # `5/10` is no standard cron; a step needs `*` or a range.
        return f"{item!r} has a step after a single value, not after * or a range a-b"
    if match["range"] == "*":
        return None
    values = [_value(part, low, names) for part in (match["low"], match["high"]) if part is not None]
    if any(value is None or not low <= value <= high for value in values):
        allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
        return f"{item!r} is not in {allowed}"
    if len(values) == 2 and values[0] > values[1]:
        return f"{item!r} is a range whose start is after its end"
    return None


def _names_in_lower_case(item: str, names: tuple[str, ...]) -> bool:
    upper = _ITEM.match(item.upper())
    return bool(upper) and upper["low"] in names and (upper["high"] or names[0]) in names


def _value(part: str, low: int, names: tuple[str, ...]) -> int | None:
    if part.isdigit():
        return int(part)
    return names.index(part) + low if part in names else None

"""Retry-After per RFC 9110 section 10.2.3: delay-seconds or an HTTP-date; anything else waits
the default backoff, and every wait is capped."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from deskd.adapters.v20.client import retry_after_s

NOW = datetime(2026, 1, 12, 12, 0, 0, tzinfo=UTC)
DEFAULT, CAP = 0.25, 30.0


def http_date(seconds_from_now: float) -> str:
    return format_datetime(NOW + timedelta(seconds=seconds_from_now), usegmt=True)


@pytest.mark.parametrize("value", [None, "", "   ", "nan", "NaN", "inf", "-inf", "-5", "abc", "1.5",
                                   "1e3", "0x10", "7 s", "\u0667", "Mon, 40 Jan 2026 12:00:10 GMT",
                                   "Mon, 12 Jan 2026 12:00:10 +9999"])
def test_anything_but_seconds_or_a_date_waits_the_default(value):
    assert retry_after_s(value, NOW, DEFAULT, CAP) == DEFAULT


@pytest.mark.parametrize("value,expected", [("7", 7.0), (" 7 ", 7.0), ("0", 0.0), ("30", 30.0),
                                            ("31", CAP), ("9" * 5_000, CAP)])
def test_delay_seconds_are_waited_up_to_the_cap(value, expected):
    assert retry_after_s(value, NOW, DEFAULT, CAP) == expected


def test_an_http_date_ahead_waits_until_then():
    assert retry_after_s(http_date(10), NOW, DEFAULT, CAP) == pytest.approx(10.0)
    assert retry_after_s("Mon, 12 Jan 2026 12:00:10 -0000", NOW, DEFAULT, CAP) == pytest.approx(10.0)
    assert retry_after_s("Monday, 12-Jan-26 12:00:10 GMT", NOW, DEFAULT, CAP) == pytest.approx(10.0)  # rfc850


def test_an_http_date_in_the_past_waits_nothing_and_a_far_one_is_capped():
    assert retry_after_s(http_date(-10), NOW, DEFAULT, CAP) == 0.0
    assert retry_after_s(http_date(3_600), NOW, DEFAULT, CAP) == CAP


def test_the_default_is_capped_too():
    assert retry_after_s("nan", NOW, 99.0, CAP) == CAP

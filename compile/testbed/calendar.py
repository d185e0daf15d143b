"""The capture calendar of the paper's lab (section III-A and V-C).

January, March and April 2020; no February (a lab problem), no 12-13 April (a power
shutdown) and no 21-22 April (a server outage); 20 April holds only about three hours,
because the capture server was shut down early. Users interacted with the devices at
least twice a week in January and March and not at all in April. Training is January and
1-15 March, testing 16 March to the end of April (section V).
"""

import datetime as dt
from dataclasses import dataclass

DAY_MS = 86_400_000
MISSING_DAYS = (
    dt.date(2020, 4, 12),
    dt.date(2020, 4, 13),
    dt.date(2020, 4, 21),
    dt.date(2020, 4, 22),
)
SHORT_DAY = dt.date(2020, 4, 20)
SHORT_DAY_HOURS = 3
TEST_START = dt.date(2020, 3, 16)
INTERACTION_WEEKDAYS = (1, 3, 5)  # Tuesday, Thursday, Saturday
MONTHS = ((2020, 1), (2020, 3), (2020, 4))
INTERACTION_MONTHS = ((2020, 1), (2020, 3))


@dataclass(frozen=True)
class Day:
    """One capture day: its UTC window, and whether users touched the devices."""

    date: dt.date
    start_ms: int
    end_ms: int
    interaction: bool

    @property
    def fraction(self) -> float:
        """Captured share of the day (1.0 except the short 20 April)."""
        return (self.end_ms - self.start_ms) / DAY_MS

    @property
    def period(self) -> str:
        """``train`` (January, 1-15 March) or ``test`` (16 March onwards)."""
        return "train" if self.date < TEST_START else "test"

    @property
    def user_month(self) -> bool:
        """True in the months with user interaction (January and March)."""
        return (self.date.year, self.date.month) in INTERACTION_MONTHS


def _epoch_ms(date: dt.date) -> int:
    midnight = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
    return int(midnight.timestamp()) * 1000


def capture_days() -> list[Day]:
    """Every captured day in order."""
    days = []
    for year, month in MONTHS:
        date = dt.date(year, month, 1)
        while date.month == month:
            if date not in MISSING_DAYS:
                start = _epoch_ms(date)
                hours = SHORT_DAY_HOURS if date == SHORT_DAY else 24
                interaction = (year, month) in INTERACTION_MONTHS and (
                    date.weekday() in INTERACTION_WEEKDAYS
                )
                days.append(Day(date, start, start + hours * 3_600_000, interaction))
            date += dt.timedelta(days=1)
    return days

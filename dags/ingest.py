"""
### ingest: land -> extract -> validate -> build_features, one day per run

The daily data pipeline of the selected use case (`DSLC_USECASE`; by default NYC flights, plus
the hourly weather at the origin airports). `<dataset>` below is its primary dataset.

| step | what it does |
|---|---|
| `wait_for_landing` | waits (reschedule mode: no worker slot held) for `landing/<dataset>/ds={{ ds }}/` |
| `extract` | parses the landed CSVs and stages them as Parquet; an unreadable file goes to `quarantine/` |
| `validate` | runs the Great Expectations suite; saves `validation/<dataset>/ds=.../result.json` and `index.html`; on failure moves the input to `quarantine/` and fails naming every failed expectation; on success publishes `raw/` |
| `build_features` | the use case's label and features (flights: pre-departure features, weather joined at origin and scheduled hour); publishes `features/<dataset>/ds=.../` and emits an Asset event with partition, rows and content hash |

The scheduled run for a day after the use case's source (the demo replays NYC flights 2013, so
"today" has no data) skips `wait_for_landing` at once, saying so; a triggered or backfilled run
for such a day waits as usual. The DAG takes no params: a run with any conf key fails at once.

Every step is idempotent for its day: clearing or backfilling gives the same bytes.
Bad data fails without retries (it would fail the same way again); fix the input and land the
day again, then clear the run. An object store that does not answer fails the call in under a
minute, naming its endpoint, and the task is retried twice, after about 20 s and then 40 s;
a partition is visible only once complete (its `_SUCCESS` manifest), so a failed day shows
nothing half-written: clear its failed tasks once the store is back.
Backfill with `dslc backfill ingest --start ... --end ...`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, dag, task

from dslc.settings import get_settings
from dslc_airflow.errors import no_retry_on
from dslc_airflow.links import ValidationResultLink, attach
from dslc_airflow.runs import check_conf
from dslc_airflow.sensors import LandingSensor

if TYPE_CHECKING:
    from dslc.data.ingest import FeaturesBuilt, Published, Staged

# The use case's primary dataset (DSLC_USECASE; flights by default) names the feature table.
_dataset = get_settings().dataset
FEATURES = Asset(name=f"dslc_features_{_dataset}", uri=f"dslc://lake/features/{_dataset}")


@dag(
    dag_id="ingest",
    schedule="@daily",
    start_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["dslc", "data"],
    default_args={
        "owner": "dslc",
        "retries": 2,
        # 20 s, then 40 s (each up to twice that, jittered per task): an object store or
        # service that is down gets time to come back before the last try.
        "retry_delay": dt.timedelta(seconds=20),
        "retry_exponential_backoff": 2.0,
        # A conf key that is not a param fails the first task, naming the nearest param.
        "pre_execute": check_conf,
    },
)
def ingest() -> None:
    # Poke interval and timeout: DSLC_LANDING_POKE_SECONDS / DSLC_LANDING_TIMEOUT_SECONDS.
    wait = LandingSensor(task_id="wait_for_landing", dataset=_dataset, retries=0)

    @task
    def extract(ds: str | None = None) -> dict[str, Staged]:
        """Parse the day's landed files and stage them for validation."""
        from dslc.data import ingest
        from dslc_airflow.lake import lake

        with no_retry_on():
            return ingest.extract_day(lake(), ds=str(ds))

    @task
    def validate(ds: str | None = None) -> dict[str, Published]:
        """Run the expectation suites; publish raw/ or quarantine the input."""
        import logging

        from dslc import reports
        from dslc.data import ingest
        from dslc.settings import get_usecase
        from dslc_airflow.lake import lake
        from dslc_airflow.links import report_link

        key = reports.validation_key(get_usecase().primary.name, str(ds))
        logging.getLogger("airflow.task").info("validation result: %s", report_link(key))
        with no_retry_on():
            return ingest.validate_day(lake(), ds=str(ds))

    @task(outlets=[FEATURES])
    def build_features(ds: str | None = None, outlet_events: Any = None) -> FeaturesBuilt:
        """Publish the day's feature partition and announce it as an Asset event."""
        from dslc.data import ingest
        from dslc_airflow.lake import lake

        with no_retry_on():
            result = ingest.build_features(lake(), ds=str(ds))
        outlet_events[FEATURES].extra = {
            k: result[k] for k in ("partition", "uri", "ds", "rows", "content_hash")
        }
        return result

    # "Validation result": the day's Data Docs, served by the dslc_ui plugin.
    validated = attach(validate(), ValidationResultLink())
    wait >> extract() >> validated >> build_features()


ingest()

"""tributary_bank — the seed's bank pipeline as an Airflow DAG, without sensors or consumer groups.

One task runs ``tributary run -c <config> --until-caught-up``: it applies everything that the
source had when the run started (MySQL/MariaDB binlog directly, or a Kafka topic with
``source.kind = "kafka"``) into PostgreSQL and exits 0. Any error exits non-zero, so the task fails
with tributary's stderr in the task log and Airflow retries it. Positions/offsets are committed in
PostgreSQL in the same transaction as the data, and applying an event twice is a no-op, so a retry
or an overlapping manual run can never duplicate history.

Settings (Airflow Variable first, then the worker's environment, then the default):

* ``tributary_bin``    / ``TRIBUTARY_BIN``    — the binary (default: ``tributary`` on PATH)
* ``tributary_config`` / ``TRIBUTARY_CONFIG`` — the TOML config (default: /etc/tributary/tributary.toml)

Secrets are never put on the command line or into a template: tributary itself reads
``TRIBUTARY_MYSQL_URL`` / ``TRIBUTARY_POSTGRES_URL`` (and the other ``TRIBUTARY_*`` variables) from
the worker's environment, which the task inherits (``append_env=True``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow import DAG

try:  # Airflow 3 / standard provider
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

DAG_ID = "tributary_bank"

# Every 5 minutes by default; TRIBUTARY_SCHEDULE="@hourly" etc. changes it (parse-time setting).
SCHEDULE = os.environ.get("TRIBUTARY_SCHEDULE", "*/5 * * * *")
# A caught-up run takes seconds; the first run snapshots whole tables and may take longer.
TIMEOUT = timedelta(minutes=int(os.environ.get("TRIBUTARY_TIMEOUT_MINUTES", "30")))
# Retrying is safe: a retry resumes from the positions committed in PostgreSQL, and an event
# applied twice is a no-op.
RETRIES = int(os.environ.get("TRIBUTARY_RETRIES", "3"))

# Resolved when the task runs (on the worker), not when the scheduler parses this file:
# Airflow Variable, else the worker's environment, else the default.
BIN = "{{ var.value.get('tributary_bin', environ.get('TRIBUTARY_BIN') or 'tributary') }}"
CONFIG = (
    "{{ var.value.get('tributary_config', "
    "environ.get('TRIBUTARY_CONFIG') or '/etc/tributary/tributary.toml') }}"
)

with DAG(
    dag_id=DAG_ID,
    description="MySQL/MariaDB bankdb.bank_accounts -> PostgreSQL current + history (tributary)",
    doc_md=__doc__,
    # A fixed start in the past + catchup=False: the first run is the latest interval only,
    # never a backfill of every 5-minute slot since start_date.
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    schedule=SCHEDULE,
    catchup=False,
    # Runs are serial: the next one waits until this one has finished instead of racing it.
    max_active_runs=1,
    max_active_tasks=1,
    # Active as soon as it is deployed (the seed's DAG sat paused: AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION).
    is_paused_upon_creation=False,
    # A run that cannot finish (e.g. the task is stuck queued for lack of a worker) is failed
    # instead of blocking every later run behind max_active_runs=1.
    dagrun_timeout=TIMEOUT + timedelta(minutes=15),
    user_defined_macros={"environ": os.environ},
    default_args={
        "owner": "data-eng",
        "retries": RETRIES,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
        "execution_timeout": TIMEOUT,
    },
    tags=["tributary", "cdc", "bank"],
) as dag:
    BashOperator(
        task_id="run_until_caught_up",
        # Only variable references on the command line: what Airflow logs ("Running command: …")
        # and renders in the UI contains paths, never a URL or password.
        bash_command='exec "$TRIBUTARY_BIN" run -c "$TRIBUTARY_CONFIG" --until-caught-up',
        # NO_COLOR: plain text in the task log (no ANSI escapes from tributary's logger).
        env={"TRIBUTARY_BIN": BIN, "TRIBUTARY_CONFIG": CONFIG, "NO_COLOR": "1"},
        append_env=True,  # keep the worker's environment: TRIBUTARY_*_URL secrets, PATH, HOME
        skip_on_exit_code=None,  # every non-zero exit is a failure (never a silent "skipped")
        doc_md="Applies everything available at start, exits 0 when caught up; non-zero → failed + retried.",
    )

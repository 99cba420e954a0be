"""Deterministic sample inventories: realistic, validated workflows for the demo, tests and benchmarks.

``generate(count, seed=...)`` lazily yields :class:`migrator.model.Workflow` objects that look like
what a data warehouse team keeps in EMR Data Development or EnOS: ods/dwd/dws/ads layers over a
handful of subject areas, daily/hourly/weekly/monthly Quartz schedules, 3 to 15 tasks of mixed kinds
(Hive/Spark SQL with date macros, spark-submit and ``hadoop jar`` jobs with OSS resources, Sqoop
imports carrying a secret password variable, shell and Python scripts, virtual start/end nodes)
wired into an extract -> transform -> publish DAG, plus occasional dependencies on earlier workflows.

The same ``(count, seed, system)`` always gives the same workflows, and a shorter run is a prefix
of a longer one. Every workflow goes through full pydantic validation (``Workflow.model_validate``).
Memory stays bounded however many workflows are generated, so a million-workflow benchmark
inventory streams straight to disk::

    python -m migrator.sample 1000000 bench/inventory.jsonl --seed 7

``write_jsonl`` writes one JSON object per line with secret variable values in plain text (an
inventory file has to carry them), so a record read back has the same ``content_hash()``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final, TypeVar

from migrator.model import Workflow

__all__ = ["generate", "main", "source_id", "write_jsonl"]

_T = TypeVar("_T")

# --------------------------------------------------------------------------------------------------
# Vocabulary. Everything below is built once at import; per-workflow work is choices and %-formatting.
# --------------------------------------------------------------------------------------------------

_SHANGHAI: Final = timezone(timedelta(hours=8))

LAYERS: Final = ("ods", "dwd", "dws", "ads")
_LAYER_WEIGHTS: Final = (5, 6, 5, 4)
_PREVIOUS_LAYER: Final = {"dwd": "ods", "dws": "dwd", "ads": "dws"}

# subject area -> (source system the ODS layer syncs from, its tables, DWS/ADS metrics)
_SUBJECTS: Final[dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    "trade": (
        "oms",
        ("orders", "order_items", "payments", "refunds", "carts", "promotions"),
        ("gmv", "order_funnel", "refund_rate", "basket_size", "payment_success"),
    ),
    "user": (
        "ucenter",
        ("users", "user_profile", "user_login", "user_address", "member_level", "devices"),
        ("retention", "active_users", "new_users", "churn", "ltv"),
    ),
    "crm": (
        "crm",
        ("accounts", "contacts", "opportunities", "leads", "tickets", "campaign_members"),
        ("pipeline", "win_rate", "ticket_sla", "lead_conversion"),
    ),
    "product": (
        "pim",
        ("products", "skus", "categories", "brands", "price_history", "inventory"),
        ("sku_sales", "stock_turnover", "price_index", "category_share"),
    ),
    "traffic": (
        "tracking",
        ("page_views", "sessions", "app_events", "search_logs", "ad_clicks", "push_logs"),
        ("uv_pv", "session_depth", "search_ctr", "channel_traffic", "bounce_rate"),
    ),
    "logistics": (
        "wms",
        ("shipments", "waybills", "warehouses", "stock_moves", "carriers", "returns"),
        ("delivery_time", "on_time_rate", "warehouse_load"),
    ),
    "finance": (
        "erp",
        ("invoices", "settlements", "ledger_entries", "payouts", "fx_rates", "tax_records"),
        ("revenue", "receivables_aging", "daily_close", "margin"),
    ),
    "marketing": (
        "mkt",
        ("campaigns", "coupons", "coupon_usage", "channels", "attribution", "budgets"),
        ("campaign_roi", "coupon_redemption", "cac", "channel_mix"),
    ),
}
_SUBJECT_NAMES: Final = tuple(_SUBJECTS)
_DB_HOSTS: Final = {
    src: f"rm-bp1{hashlib.sha256(src.encode()).hexdigest()[:13]}.mysql.rds.aliyuncs.com"
    for src, _, _ in _SUBJECTS.values()
}

# Transform steps; none of them starts like an extract (load_/pull_/sqoop_import_/wait_) or the
# final task (publish_/dq_check_/done), so task names are unique by construction.
_STEPS: Final = (
    "clean",
    "dedup",
    "enrich",
    "join_dim",
    "mask_pii",
    "normalize",
    "agg",
    "merge",
    "snapshot",
    "rollup",
    "calc_metrics",
    "scd2",
    "filter_test",
    "explode",
    "sessionize",
    "compact",
)

_CADENCES: Final = ("daily", "hourly", "weekly", "monthly")
_CADENCE_WEIGHTS: Final = (6, 2, 1, 1)
# task count 3..15, most workflows in the 4..10 range
_TASK_COUNT_WEIGHTS: Final = (6, 10, 12, 12, 11, 10, 9, 8, 6, 5, 4, 4, 3)
_MINUTES: Final = (0, 0, 5, 10, 15, 20, 30, 40, 45, 50)
_TIMEOUTS: Final = (None, None, None, 1800.0, 3600.0, 3600.0, 7200.0, 10800.0, 21600.0)
_RETRY_INTERVALS: Final = (30.0, 60.0, 60.0, 120.0, 180.0, 300.0)
_MEMORY: Final = (1024, 2048, 2048, 4096, 4096, 6144, 8192)
_QUEUES: Final = ("default", "etl", "etl")
_OWNERS: Final = (
    "zhang.wei",
    "li.na",
    "wang.fang",
    "liu.yang",
    "chen.jie",
    "yang.min",
    "zhao.lei",
    "huang.xin",
    "zhou.tao",
    "wu.hao",
    "dw_ops",
    "bi_platform",
)
_CHANNEL_SETS: Final = (
    ("email",),
    ("dingtalk",),
    ("email", "dingtalk"),
    ("email", "sms"),
    ("sms", "dingtalk"),
)

_WF_DESCRIPTIONS: Final = {
    "ods": (
        "Sync %(src)s.%(table)s from the %(src)s MySQL replica into the ODS layer (%(cadence)s).",
        "%(src)s 业务库 %(table)s 表%(cadence_zh)s同步到 ODS 层",
        "Raw %(cadence)s extract of %(table)s; partitioned by dt, kept 180 days.",
    ),
    "dwd": (
        "Cleansed, de-duplicated %(table)s detail facts for the %(subject)s domain (%(cadence)s).",
        "%(subject)s 域 %(table)s 明细%(cadence_zh)s加工 (DWD)",
        "DWD %(table)s: PII masked, joined to dimensions, %(cadence)s partitions.",
    ),
    "dws": (
        "%(subject)s %(metric)s light aggregates, %(cadence)s grain.",
        "%(subject)s 主题 %(metric)s 汇总层%(cadence_zh)s计算",
        "Summary of %(metric)s by day/channel/region for the %(subject)s domain.",
    ),
    "ads": (
        "%(metric)s report feed for the %(subject)s dashboards (%(cadence)s refresh).",
        "%(subject)s %(metric)s 报表数据%(cadence_zh)s产出 (ADS)",
        "Publishes %(metric)s to the BI mart; consumed by the Quick BI %(subject)s board.",
    ),
}
_CADENCE_ZH: Final = {"daily": "每日", "hourly": "每小时", "weekly": "每周", "monthly": "每月"}

# --------------------------------------------------------------------------------------------------
# Task content templates (%-style so the ``${...}`` scheduler macros need no escaping).
# ``%(dt)s`` is the date macro, ``%(part)s`` the partition spec; both depend on the workflow's style.
# --------------------------------------------------------------------------------------------------

_SQOOP = (
    "sqoop import --connect jdbc:mysql://%(host)s:3306/%(src)s_prod?useSSL=false "
    "--username ${db_user} --password ${db_password} --table %(table)s "
    "--where \"gmt_modified >= '%(dt)s'\" --target-dir /warehouse/ods/%(src)s/%(table)s/dt=%(dt)s "
    "--delete-target-dir --hive-import --hive-overwrite --hive-table %(in_table)s "
    "--hive-partition-key dt --hive-partition-value %(dt)s --fields-terminated-by '\\001' "
    "--null-string '\\\\N' --null-non-string '\\\\N' -m %(mappers)d"
)

_SHELL_LOAD = """#!/bin/bash
set -euo pipefail
DT="%(dt)s"
SRC="oss://acme-dw-landing/%(src)s/%(table)s/$DT/"
DST="/warehouse/ods/%(src)s/%(table)s/dt=$DT"
hdfs dfs -mkdir -p "$DST"
hadoop distcp -overwrite -m 8 "$SRC" "$DST"
hive -e "ALTER TABLE %(in_table)s ADD IF NOT EXISTS PARTITION (%(part)s) LOCATION '$DST'"
echo "loaded %(table)s for $DT"
"""

_SHELL_WAIT = """#!/bin/bash
# wait for the upstream partition to land before transforming
set -uo pipefail
for i in $(seq 1 60); do
  if hive -S -e "SHOW PARTITIONS %(in_table)s PARTITION (%(part)s)" | grep -q dt=; then
    exit 0
  fi
  sleep 60
done
echo "%(in_table)s partition (%(part)s) not ready after 60 min" >&2
exit 1
"""

_PYTHON_PULL = """import json
import os
import sys

import requests
from pyhive import hive

biz_date = "%(dt)s"
resp = requests.get(
    "https://api.%(src)s.acme-internal.com/v2/%(table)s",
    params={"date": biz_date, "page_size": 5000},
    headers={"Authorization": "Bearer " + os.environ.get("API_TOKEN", "")},
    timeout=120,
)
resp.raise_for_status()
rows = resp.json()["data"]
path = "/tmp/%(table)s_" + biz_date + ".json"
with open(path, "w") as fh:
    for row in rows:
        fh.write(json.dumps(row, ensure_ascii=False) + "\\n")
cur = hive.connect("emr-header-1", username="hadoop").cursor()
cur.execute("LOAD DATA LOCAL INPATH '" + path + "' OVERWRITE INTO TABLE %(in_table)s PARTITION (%(part)s)")
print("pulled", len(rows), "rows", file=sys.stderr)
"""

_HIVE_SQL = (
    """-- %(step)s %(entity)s (%(layer)s)
SET hive.exec.dynamic.partition.mode=nonstrict;
SET mapreduce.job.queuename=%(queue)s;
INSERT OVERWRITE TABLE %(out_table)s PARTITION (%(part)s)
SELECT t.id,
       t.%(entity)s_key,
       COALESCE(t.amount, 0) AS amount,
       t.status,
       d.region_name,
       t.gmt_create,
       t.gmt_modified
FROM %(in_table)s t
LEFT JOIN dim.dim_region d ON t.region_id = d.region_id
WHERE t.dt = '%(dt)s'
  AND t.is_deleted = 0;
""",
    """-- %(step)s: keep the latest version of each %(entity)s row
INSERT OVERWRITE TABLE %(out_table)s PARTITION (%(part)s)
SELECT id, %(entity)s_key, amount, status, gmt_modified
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY gmt_modified DESC) AS rn
  FROM %(in_table)s
  WHERE dt = '%(dt)s'
) x
WHERE rn = 1;
""",
    """-- %(step)s %(entity)s summary
INSERT OVERWRITE TABLE %(out_table)s PARTITION (%(part)s)
SELECT region_name,
       channel,
       COUNT(DISTINCT user_id) AS users,
       SUM(amount) AS amount,
       SUM(CASE WHEN status = 'PAID' THEN 1 ELSE 0 END) AS paid_cnt
FROM %(in_table)s
WHERE dt = '%(dt)s'
GROUP BY region_name, channel;
""",
)

_SPARK_SQL = (
    """-- spark sql: %(step)s %(entity)s
SET spark.sql.shuffle.partitions=%(partitions)d;
INSERT OVERWRITE TABLE %(out_table)s PARTITION (%(part)s)
SELECT /*+ BROADCAST(d) */
       f.*, d.category_name, d.brand_name
FROM %(in_table)s f
JOIN dim.dim_product d ON f.product_id = d.product_id
WHERE f.dt = '%(dt)s';
""",
    """-- spark sql: %(step)s %(entity)s
CACHE TABLE src AS SELECT * FROM %(in_table)s WHERE dt = '%(dt)s';
INSERT OVERWRITE TABLE %(out_table)s PARTITION (%(part)s)
SELECT user_id,
       approx_count_distinct(session_id) AS sessions,
       percentile_approx(duration_ms, 0.5) AS p50_duration_ms,
       max(event_time) AS last_seen
FROM src
GROUP BY user_id;
""",
)

_SPARK = (
    "--master yarn --deploy-mode cluster --name %(wf_name)s.%(task_name)s "
    "--class com.acme.dw.%(class_name)s --queue %(queue)s "
    "--driver-memory 2g --executor-memory %(executor_gb)dg --executor-cores %(cores)d "
    "--num-executors %(executors)d --conf spark.sql.shuffle.partitions=%(partitions)d "
    "--conf spark.dynamicAllocation.enabled=false "
    "ossref://acme-dw-prod/jars/%(jar)s %(in_table)s %(out_table)s %(dt)s"
)

_MR = (
    "com.acme.dw.mr.%(class_name)s -D mapreduce.job.queuename=%(queue)s "
    "-D mapreduce.map.memory.mb=%(memory)d -D mapreduce.job.reduces=%(reducers)d "
    "/warehouse/%(layer)s/%(entity)s/raw/dt=%(dt)s /warehouse/%(layer)s/%(entity)s/%(step)s/dt=%(dt)s"
)

_PYTHON_TRANSFORM = """import sys

import pandas as pd
from pyhive import hive

biz_date = "%(dt)s"
conn = hive.connect("emr-header-1", username="hadoop", configuration={"mapreduce.job.queuename": "%(queue)s"})
df = pd.read_sql("SELECT * FROM %(in_table)s WHERE dt = '" + biz_date + "'", conn)
df = df.drop_duplicates(subset=["id"]).fillna({"amount": 0})
df["%(step)s_flag"] = df["amount"] > df["amount"].quantile(0.99)
df.to_parquet("/tmp/%(entity)s_%(step)s_" + biz_date + ".parquet", index=False)
print(len(df), "rows", file=sys.stderr)
"""

_SHELL_TRANSFORM = """#!/bin/bash
set -euo pipefail
DT="%(dt)s"
hive -f /opt/etl/sql/%(layer)s/%(entity)s_%(step)s.sql \\
  --hivevar dt="$DT" --hiveconf mapreduce.job.queuename=%(queue)s
"""

_SHELL_CHECK = """#!/bin/bash
# data quality gate: fail the workflow when the output looks empty or duplicated
set -euo pipefail
cnt=$(hive -S -e "SELECT COUNT(1) FROM %(out_table)s WHERE dt='%(dt)s'")
dup=$(hive -S -e "SELECT COUNT(1) - COUNT(DISTINCT id) FROM %(out_table)s WHERE dt='%(dt)s'")
if [ "$cnt" -lt %(min_rows)d ]; then echo "%(out_table)s: only $cnt rows" >&2; exit 1; fi
if [ "$dup" -gt 0 ]; then echo "%(out_table)s: $dup duplicate ids" >&2; exit 2; fi
echo "%(out_table)s ok: $cnt rows"
"""

_HIVE_PUBLISH = """-- publish: swap the serving view to the new partition and refresh stats
ANALYZE TABLE %(out_table)s PARTITION (%(part)s) COMPUTE STATISTICS;
CREATE OR REPLACE VIEW %(layer)s.v_%(entity)s_latest AS
SELECT * FROM %(out_table)s WHERE dt = '%(dt)s';
"""

_ENV_BY_KIND: Final[dict[str, tuple[dict[str, str], ...]]] = {
    "shell": ({}, {"HADOOP_USER_NAME": "hadoop"}, {"TZ": "Asia/Shanghai", "LANG": "en_US.UTF-8"}),
    "python": (
        {},
        {"PYTHONPATH": "/opt/etl/lib"},
        {"PYTHONPATH": "/opt/etl/lib", "API_TOKEN_FILE": "/etc/etl/token"},
    ),
    "spark": ({}, {"SPARK_HOME": "/usr/lib/spark-current"}, {"JAVA_HOME": "/usr/lib/jvm/java-1.8.0"}),
    "other": ({}, {}, {"HADOOP_USER_NAME": "hadoop"}),
}

_MIB: Final = 1024


def _expand(values: Sequence[_T], weights: Sequence[int]) -> tuple[_T, ...]:
    """A draw table: ``pick`` on it is a weighted choice without ``random.choices``' overhead."""
    return tuple(v for v, w in zip(values, weights, strict=True) for _ in range(w))


_LAYER_DRAW: Final = _expand(LAYERS, _LAYER_WEIGHTS)
_CADENCE_DRAW: Final = _expand(_CADENCES, _CADENCE_WEIGHTS)
_TASK_COUNT_DRAW: Final = _expand(range(3, 16), _TASK_COUNT_WEIGHTS)


def source_id(seed: int, index: int) -> str:
    """The EMR-style flow id of workflow ``index`` under ``seed``: ``F-`` plus 16 upper-case hex digits."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8, person=b"migrator.sample").hexdigest()
    return "F-" + digest.upper()


def _pool(rng: random.Random, prefix: str, size: int, bits: int) -> tuple[str, ...]:
    width = bits // 4
    return tuple(f"{prefix}{rng.getrandbits(bits):0{width}x}" for _ in range(size))


_PASSWORD_ALPHABET: Final = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!@#%^*_-"


class _Generator:
    """Holds the random stream and the bounded state (recent keys, name counters) of one run."""

    def __init__(self, seed: int, system: str) -> None:
        self.seed = seed
        self.system = system
        self.rng = random.Random(seed)
        self.rand = self.rng.random
        rng = self.rng
        # Shared pools, as in a real tenant: a few alert groups, clusters and database credentials.
        self.user_groups = _pool(rng, "AUG-", 6, 128)
        self.ding_groups = _pool(rng, "ADG-", 4, 128)
        self.clusters = tuple("C-" + c[2:].upper() for c in _pool(rng, "C-", 3, 64))
        self.db_password = {
            src: "".join(rng.choice(_PASSWORD_ALPHABET) for _ in range(16)) for src in _DB_HOSTS
        }
        # Recent workflow keys per (layer, subject) and per layer, for upstream references.
        self.recent: dict[tuple[str, str], deque[str]] = {}
        self.recent_layer: dict[str, deque[str]] = {layer: deque(maxlen=64) for layer in LAYERS}
        # Occurrences of each base name (bounded by the vocabulary, not by count).
        self.names: dict[str, int] = {}

    def pick(self, seq: Sequence[_T]) -> _T:
        """Uniform choice; cheaper than ``random.choice`` (one float draw, no rejection loop)."""
        return seq[int(self.rand() * len(seq))]

    # ---------------------------------------------------------------------------------------------
    def workflow(self, index: int) -> dict[str, Any]:
        rng = self.rng
        rand = rng.random
        pick = self.pick

        layer = pick(_LAYER_DRAW)
        subject = pick(_SUBJECT_NAMES)
        src, tables, metrics = _SUBJECTS[subject]
        table = pick(tables)
        metric = pick(metrics)
        cadence = pick(_CADENCE_DRAW)
        if layer == "ods" and cadence in ("weekly", "monthly"):
            cadence = "daily"

        # ---- identity ------------------------------------------------------------------------
        if layer == "ods":
            base = f"ods_sync_{src}_{table}" + ("_hourly" if cadence == "hourly" else "")
            folder = f"warehouse/ods/{src}"
            entity = table
            out_table = f"ods.ods_{src}_{table}_{'hi' if cadence == 'hourly' else 'di'}"
            prev_prefix = ""
        elif layer == "dwd":
            base = f"dwd_{table}_{cadence}"
            folder = f"warehouse/dwd/{table}"
            entity = table
            out_table = f"dwd.dwd_{subject}_{table}_{'hi' if cadence == 'hourly' else 'di'}"
            prev_prefix = f"ods.ods_{src}_"
        elif layer == "dws":
            base = f"dws_{subject}_{metric}_{cadence}"
            folder = f"warehouse/dws/{subject}"
            entity = metric
            out_table = f"dws.dws_{subject}_{metric}_{cadence[0]}"
            prev_prefix = f"dwd.dwd_{subject}_"
        else:
            base = f"ads_{subject}_{metric}_{cadence}"
            folder = f"warehouse/ads/{subject}"
            entity = metric
            out_table = f"ads.ads_{subject}_{metric}"
            prev_prefix = f"dws.dws_{subject}_"
        seen = self.names.get(base, 0) + 1
        self.names[base] = seen
        name = base if seen == 1 else f"{base}_{seen}"
        sid = source_id(self.seed, index)
        key = f"{self.system}:{sid}"

        # ---- parameters and date macro style ---------------------------------------------------
        hourly = cadence == "hourly"
        style = rand()
        params: dict[str, str]
        if style < 0.55:  # DataWorks-style named parameters fed by an EMR date macro
            dt = "${bizdate}"
            if hourly:
                params = {"bizdate": "${yyyyMMdd}", "bizhour": "${HH-1h}"}
                part = "dt='${bizdate}', hh='${bizhour}'"
            else:
                params = {"bizdate": "${yyyyMMdd-1d}"}
                part = "dt='${bizdate}'"
        else:  # EMR date macros written straight into the job content
            dt = "${yyyy-MM-dd}" if style < 0.8 else "${yyyyMMdd-1d}"
            part = f"dt='{dt}', hh='${{HH-1h}}'" if hourly else f"dt='{dt}'"
            params = {} if rand() < 0.6 else {"env": "prod"}
        if rand() < 0.2:
            params = {**params, "dw_owner": pick(_OWNERS)}

        # ---- schedule -------------------------------------------------------------------------
        schedule: dict[str, Any] | None
        if rand() < 0.03:
            schedule = None  # triggered by hand or by an external system
        else:
            minute = pick(_MINUTES)
            hour = 1 + int(rand() * 6)
            if cadence == "daily":
                cron = f"0 {minute} {hour} * * ?"
            elif hourly:
                cron = f"0 {minute} 0-23/1 * * ?" if rand() < 0.6 else f"0 {minute} * * * ?"
            elif cadence == "weekly":
                cron = f"0 {minute} {hour} ? * {1 + int(rand() * 7)}"
            else:
                cron = f"0 {minute} {hour} {1 + int(rand() * 5)} * ?"
            start = datetime(2023, 1, 1, tzinfo=_SHANGHAI) + timedelta(days=int(rand() * 540))
            schedule = {"cron": cron, "timezone": "Asia/Shanghai", "start": start}
            if rand() < 0.15:
                schedule["end"] = start + timedelta(days=365 * (1 + int(rand() * 3)))
            if rand() < 0.06:
                schedule["paused"] = True

        # ---- upstream workflows (bounded windows of recent keys) ---------------------------------
        upstream: list[str] = []
        prev = _PREVIOUS_LAYER.get(layer)
        if prev is not None and rand() < 0.17:
            window = self.recent.get((prev, subject)) or self.recent_layer[prev]
            if window:
                upstream.append(pick(window))
                if len(window) > 1 and rand() < 0.2:
                    other = pick(window)
                    if other != upstream[0]:
                        upstream.append(other)
        self.recent.setdefault((layer, subject), deque(maxlen=16)).append(key)
        self.recent_layer[layer].append(key)

        # ---- alerts ---------------------------------------------------------------------------
        alerts: dict[str, Any] = {}
        if rand() < 0.35:
            channels = pick(_CHANNEL_SETS)
            alerts = {
                "on_failure": True,
                "on_success": rand() < 0.1,
                "on_task_failure": rand() < 0.4,
                "channels": channels,
                "recipients": (pick(self.user_groups),),
            }
            if "dingtalk" in channels:
                alerts["dingtalk_groups"] = (pick(self.ding_groups),)

        fmt = {
            "src": src,
            "subject": subject,
            "table": table,
            "metric": metric,
            "cadence": cadence,
            "cadence_zh": _CADENCE_ZH[cadence],
        }
        description = pick(_WF_DESCRIPTIONS[layer]) % fmt
        owners = (pick(_OWNERS),) if rand() < 0.7 else tuple(rng.sample(_OWNERS, 2))

        tasks, edges = self._tasks(
            rng,
            name=name,
            layer=layer,
            src=src,
            subject=subject,
            entity=entity,
            tables=tables,
            prev_prefix=prev_prefix,
            out_table=out_table,
            dt=dt,
            part=part,
            hourly=hourly,
        )
        return {
            "name": name,
            "source": {"system": self.system, "id": sid},
            "description": description,
            "folder": folder,
            "owners": owners,
            "schedule": schedule,
            "parameters": params,
            "alerts": alerts,
            "upstream": upstream,
            "tasks": tasks,
            "edges": edges,
        }

    # ---------------------------------------------------------------------------------------------
    def _tasks(
        self,
        rng: random.Random,
        *,
        name: str,
        layer: str,
        src: str,
        subject: str,
        entity: str,
        tables: tuple[str, ...],
        prev_prefix: str,
        out_table: str,
        dt: str,
        part: str,
        hourly: bool,
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        rand = rng.random
        pick = self.pick

        # Shape: [virtual start] -> 1..5 extracts -> 1..13 transforms -> 1 final check/publish.
        n_total = pick(_TASK_COUNT_DRAW)
        has_start = n_total >= 5 and rand() < 0.1
        room = n_total - 1 - has_start  # extracts + transforms
        n_extract = 1 + int(rand() * min(5, room - 1, len(tables)))
        n_transform = room - n_extract
        suffix = "hi" if hourly else "di"
        queue_default = pick(_QUEUES)
        base_fmt: dict[str, Any] = {
            "dt": dt,
            "part": part,
            "src": src,
            "host": _DB_HOSTS[src],
            "layer": layer,
            "entity": entity,
            "wf_name": name,
            "out_table": out_table,
            "queue": queue_default,
        }

        tasks: list[dict[str, Any]] = []
        edges: list[dict[str, str]] = []
        downstream_count: dict[str, int] = {}

        def add(task: dict[str, Any]) -> str:
            tasks.append(task)
            downstream_count[task["name"]] = 0
            return str(task["name"])

        def link(up: str, down: str) -> None:
            edges.append({"upstream": up, "downstream": down})
            downstream_count[up] += 1

        start = add({"name": "start", "kind": "virtual", "description": "entry point"}) if has_start else None

        # ---- extracts ---------------------------------------------------------------------------
        ingest_tables = [entity] if layer in ("ods", "dwd") else []
        ingest_tables += [t for t in rng.sample(tables, n_extract) if t not in ingest_tables]
        extract_names: list[str] = []
        in_tables: list[str] = []
        for table in ingest_tables[:n_extract]:
            in_table = (
                f"ods.ods_{src}_{table}_{suffix}" if layer == "ods" else f"{prev_prefix}{table}_{suffix}"
            )
            in_tables.append(in_table)
            fmt = {**base_fmt, "table": table, "in_table": in_table}
            r = rand()
            variables: list[dict[str, Any]] = []
            resources: list[dict[str, str]] = []
            if layer == "ods" and r < 0.55:
                kind, task_name = "sqoop", f"sqoop_import_{table}"
                fmt["mappers"] = pick((1, 2, 4, 4, 8))
                content = _SQOOP % fmt
                desc = f"import {src}.{table} from MySQL"
                variables = [
                    {"name": "db_user", "value": f"etl_{src}_ro"},
                    {"name": "db_password", "value": self.db_password[src], "secret": True},
                ]
            elif layer == "ods" and r < 0.8:
                kind, task_name = "python", f"pull_{table}"
                content = _PYTHON_PULL % fmt
                desc = f"pull {table} from the {src} API"
                if rand() < 0.5:
                    variables = [
                        {"name": "api_token", "value": f"tk_{self.db_password[src][:12]}", "secret": True}
                    ]
            elif layer == "ods":
                kind, task_name = "shell", f"load_{table}"
                content = _SHELL_LOAD % fmt
                desc = f"copy landed {table} files from OSS"
            elif r < 0.75:
                kind, task_name = "shell", f"wait_{table}"
                content = _SHELL_WAIT % fmt
                desc = f"wait for {in_table}"
            else:
                kind, task_name = "hive_sql", f"load_{table}"
                content = _HIVE_SQL[0] % {**fmt, "step": "stage", "out_table": f"tmp.stg_{entity}_{table}"}
                desc = f"stage {in_table}"
            extract_names.append(
                add(
                    self._task(
                        task_name, kind, content, description=desc, resources=resources, variables=variables
                    )
                )
            )
            if start is not None:
                link(start, task_name)

        # ---- transforms -------------------------------------------------------------------------
        steps = rng.sample(_STEPS, n_transform)
        transform_names: list[str] = []
        for j, step in enumerate(steps):
            task_name = f"{step}_{entity}"
            in_table = pick(in_tables)
            tmp_out = out_table if j == n_transform - 1 else f"tmp.{layer}_{entity}_{step}"
            fmt = {**base_fmt, "step": step, "in_table": in_table, "out_table": tmp_out}
            r = rand()
            resources = []
            variables = []
            if r < 0.35:
                kind = "hive_sql"
                content = pick(_HIVE_SQL) % fmt
            elif r < 0.55:
                kind = "spark_sql"
                fmt["partitions"] = pick((50, 200, 400, 800))
                content = pick(_SPARK_SQL) % fmt
            elif r < 0.70:
                kind = "spark"
                jar = f"dw-{layer}-{subject}-{1 + int(rand() * 3)}.{int(rand() * 10)}.{int(rand() * 20)}.jar"
                class_name = "".join(p.capitalize() for p in f"{entity}_{step}".split("_")) + "Job"
                fmt.update(
                    jar=jar,
                    class_name=class_name,
                    task_name=task_name,
                    executor_gb=pick((2, 4, 4, 8)),
                    cores=pick((1, 2, 2, 4)),
                    executors=pick((4, 8, 16, 32)),
                    partitions=pick((200, 400, 800)),
                )
                content = _SPARK % fmt
                resources = [{"path": f"oss://acme-dw-prod/jars/{jar}", "alias": jar}]
            elif r < 0.80:
                kind = "python"
                content = _PYTHON_TRANSFORM % fmt
            elif r < 0.88:
                kind = "mr"
                class_name = "".join(p.capitalize() for p in step.split("_")) + "Driver"
                fmt.update(class_name=class_name, memory=pick(_MEMORY), reducers=pick((8, 16, 32, 64)))
                content = _MR % fmt
                resources = [
                    {"path": f"oss://acme-dw-prod/jars/dw-mr-{layer}.jar", "alias": f"dw-mr-{layer}.jar"}
                ]
            else:
                kind = "shell"
                content = _SHELL_TRANSFORM % fmt
                resources = [
                    {
                        "path": f"oss://acme-dw-prod/sql/{layer}/{entity}_{step}.sql",
                        "alias": f"{entity}_{step}.sql",
                    }
                ]
            if rand() < 0.08:
                variables = [{"name": "sample_ratio", "value": pick(("0.01", "0.1", "1.0"))}]
            add(
                self._task(
                    task_name,
                    kind,
                    content,
                    description=f"{step} {entity}",
                    resources=resources,
                    variables=variables,
                )
            )
            # Fan-in: the first transform reads 1..3 extracts; later ones read an earlier transform
            # and sometimes an extract too.
            if j == 0:
                for up in rng.sample(extract_names, min(len(extract_names), 1 + int(rand() * 3))):
                    link(up, task_name)
            else:
                link(pick(transform_names), task_name)
                if rand() < 0.3:
                    link(pick(extract_names), task_name)
            transform_names.append(task_name)
        # Fan-out and no dangling extracts: every extract feeds some transform.
        for up in extract_names:
            if downstream_count[up] == 0:
                link(up, pick(transform_names))

        # ---- final publish / check --------------------------------------------------------------
        r = rand()
        fmt = {**base_fmt, "min_rows": pick((1, 100, 1000, 10000))}
        if r < 0.5:
            final = self._task(
                f"dq_check_{entity}",
                "shell",
                _SHELL_CHECK % fmt,
                description="row count gate on " + out_table,
            )
        elif r < 0.8:
            final = self._task(
                f"publish_{entity}", "hive_sql", _HIVE_PUBLISH % fmt, description="publish " + out_table
            )
        else:
            final = {"name": "done", "kind": "virtual", "description": "end of workflow"}
        final_name = add(final)
        for t in transform_names:
            if downstream_count[t] == 0:
                link(t, final_name)
        return tasks, edges

    # ---------------------------------------------------------------------------------------------
    def _task(
        self,
        name: str,
        kind: str,
        content: str,
        *,
        description: str,
        resources: Sequence[dict[str, str]] = (),
        variables: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Task dict with the scheduling knobs (retries, timeout, run settings, env) filled in."""
        rand = self.rand
        pick = self.pick
        retries = pick((0, 0, 1, 1, 2, 3, 3, 5)) if rand() < 0.85 else int(rand() * 6)
        memory = pick(_MEMORY)
        run: dict[str, Any] = {
            "queue": pick(_QUEUES),
            "memory_mb": memory,
            "cores": float(1 + int(rand() * 4)),
            "priority": 1 + int(rand() * 5),
            "user": "hadoop",
            "mode": "YARN" if kind in ("spark", "spark_sql", "mr") or rand() < 0.7 else "LOCAL",
        }
        if rand() < 0.2:
            run["cluster"] = pick(self.clusters)
        env_kind = kind if kind in ("shell", "python", "spark") else "other"
        task: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "content": content,
            "description": description,
            "resources": resources,
            "max_retries": retries,
            "retry_interval": pick(_RETRY_INTERVALS) if retries else 0.0,
            "timeout": pick(_TIMEOUTS),
            "failure_action": "continue" if rand() < 0.15 else "stop",
            "run": run,
            "environment": pick(_ENV_BY_KIND[env_kind]),
            "variables": variables,
        }
        if rand() < 0.25:
            task["parameters"] = (
                {"date": "${yyyy-MM-dd}"} if rand() < 0.6 else {"mem_gb": str(memory // _MIB)}
            )
        return task


def generate(count: int, *, seed: int = 7, system: str = "emr") -> Iterator[Workflow]:
    """Yield ``count`` validated sample workflows, deterministically for ``(seed, system)``.

    Lazy and bounded in memory; a shorter run is a prefix of a longer one with the same seed.
    ``upstream`` entries are keys (``system:F-...``) of workflows yielded earlier in the same run.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    gen = _Generator(seed, system)
    validate = Workflow.model_validate
    for index in range(count):
        yield validate(gen.workflow(index))


def write_jsonl(path: Path, workflows: Iterable[Workflow]) -> int:
    """Write one JSON object per line (UTF-8, secrets in plain) and return how many were written."""
    n = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with Path(path).open("w", encoding="utf-8", newline="\n") as fh:
        write = fh.write
        for workflow in workflows:
            write(dumps(workflow.to_record()))
            write("\n")
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    """``python -m migrator.sample COUNT OUT.jsonl [--seed N] [--system S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m migrator.sample", description="Write a deterministic sample inventory (JSON Lines)."
    )
    parser.add_argument("count", type=int, help="how many workflows to generate")
    parser.add_argument("out", type=Path, help="output JSON Lines file")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--system", default="emr", help="source system of the generated keys (default emr)")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("count must be >= 0")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    n = write_jsonl(args.out, generate(args.count, seed=args.seed, system=args.system))
    print(f"wrote {n} workflows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

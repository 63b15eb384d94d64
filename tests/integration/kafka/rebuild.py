# Reads every topic PREFIX.* of a Kafka broker from the start with
# kafka-python (a client this project did not write), partitions assigned
# explicitly (no consumer group), and rebuilds each table from Debezium's
# records the way a sink keyed by the record key does: op r/c/u puts the
# `after` image under the key, op d and a tombstone remove the key.
#
# Usage: rebuild.py SERVERS PREFIX ISOLATION
# Prints one JSON object: {"tables": {name: [after image, ...]}, "records": N,
# "schema_records": N, "problems": [...]}.
import json
import sys

from kafka import KafkaConsumer, TopicPartition

servers, prefix, isolation = sys.argv[1], sys.argv[2], sys.argv[3]
consumer = KafkaConsumer(
    bootstrap_servers=servers,
    enable_auto_commit=False,
    consumer_timeout_ms=1500,
    isolation_level=isolation,
    request_timeout_ms=30000,
)
topics = sorted(t for t in consumer.topics() if t == prefix or t.startswith(prefix + "."))
parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
consumer.assign(parts)
for tp in parts:
    consumer.seek(tp, 0)

tables, problems = {}, []
records = schema_records = 0
seen = {}
for m in consumer:
    records += 1
    headers = {k: v.decode() for k, v in (m.headers or [])}
    if m.topic == prefix:
        schema_records += 1
        continue
    key = m.key.decode() if m.key is not None else None
    if key is None:
        problems.append(f"{m.topic}@{m.offset}: no key")
        continue
    if m.value is None:
        table = seen.get(m.topic)
        if table is not None:
            tables.setdefault(table, {}).pop(key, None)
        continue
    env = json.loads(m.value)
    table = env["source"]["table"]
    seen[m.topic] = table
    if "cdc-log-id" not in headers or headers.get("cdc-kind") not in ("change", "bootstrap"):
        problems.append(f"{m.topic}@{m.offset}: headers {headers}")
    if env["op"] in ("c", "u", "d") and headers.get("cdc-seq") != str(env["source"]["seq"]):
        problems.append(f"{m.topic}@{m.offset}: cdc-seq {headers.get('cdc-seq')} for seq {env['source'].get('seq')}")
    rows = tables.setdefault(table, {})
    if env["op"] == "d":
        rows.pop(key, None)
    else:
        rows[key] = env["after"]
print(json.dumps({
    "tables": {t: list(rows.values()) for t, rows in tables.items()},
    "records": records,
    "schema_records": schema_records,
    "problems": problems,
}))

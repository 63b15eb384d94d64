# Reads every topic PREFIX.* of a Kafka broker from the start with
# kafka-python (a client this project did not write), partitions assigned
# explicitly (no consumer group), and rebuilds the tables as a consumer of
# docs/kafka.md does: each table is made in an in-memory SQLite database
# from its schema change record (topic PREFIX), then op r/c/u is applied
# as an upsert through the table's unique keys (INSERT OR REPLACE: what
# the source's own INSERT OR REPLACE evicted without a delete goes too),
# op d deletes the record key's row; tombstones follow deletes; op t (a
# bootstrap begins) empties the table.
#
# Usage: [CDC_KAFKA_CA=PEM] rebuild.py SERVERS PREFIX ISOLATION
# Prints one JSON object: {"tables": {name: [after image, ...]}, "records": N,
# "schema_records": N, "problems": [...]}.
import json
import os
import sqlite3
import sys

from kafka import KafkaConsumer, TopicPartition

servers, prefix, isolation = sys.argv[1], sys.argv[2], sys.argv[3]
# CDC_KAFKA_CA: read over TLS, trusting that CA file.
ca = os.environ.get("CDC_KAFKA_CA")
tls = {"security_protocol": "SSL", "ssl_cafile": ca} if ca else {}
consumer = KafkaConsumer(
    bootstrap_servers=servers,
    enable_auto_commit=False,
    consumer_timeout_ms=1500,
    isolation_level=isolation,
    request_timeout_ms=30000,
    **tls,
)


def read(topics):
    parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
    consumer.assign(parts)
    for tp in parts:
        consumer.seek(tp, 0)
    return list(consumer)


def quote(name):
    return '"' + name.replace('"', '""') + '"'


topics = sorted(t for t in consumer.topics() if t.startswith(prefix + "."))
problems = []
db = sqlite3.connect(":memory:")
ddl = {}
schema = read([prefix]) if prefix in consumer.topics() else []
for m in schema:
    record = json.loads(m.value)
    table = record["source"]["table"]
    ddl[table] = record["ddl"]
for table, text in ddl.items():
    if not text.startswith("DROP"):
        db.executescript(text)
records = read(topics)
counts = {}
for m in records:
    headers = {k: v.decode() for k, v in (m.headers or [])}
    if m.key is None:
        problems.append(f"{m.topic}@{m.offset}: no key")
        continue
    key = json.loads(m.key)
    if m.value is None:
        continue
    env = json.loads(m.value)
    table = env["source"]["table"]
    if table not in ddl:
        problems.append(f"{m.topic}@{m.offset}: no schema change record for {table}")
        continue
    if "cdc-log-id" not in headers or headers.get("cdc-kind") not in ("change", "bootstrap", "bootstrap-begin"):
        problems.append(f"{m.topic}@{m.offset}: headers {headers}")
    if env["op"] in ("c", "u", "d") and headers.get("cdc-seq") != str(env["source"]["seq"]):
        problems.append(f"{m.topic}@{m.offset}: cdc-seq {headers.get('cdc-seq')} for seq {env['source'].get('seq')}")
    if env["op"] == "t":
        # A bootstrap begins: what the table held goes (one partition here).
        db.execute(f"DELETE FROM {quote(table)}")
        continue
    where = " AND ".join(f"{quote(c)} IS ?" for c in key)
    if env["op"] == "d":
        db.execute(f"DELETE FROM {quote(table)} WHERE {where}", list(key.values()))
        continue
    row = dict(env["after"])
    if "rowid" in key and "rowid" not in row:
        row = {"rowid": key["rowid"], **row}
    columns = ", ".join(quote(c) for c in row)
    marks = ", ".join("?" for _ in row)
    db.execute(f"INSERT OR REPLACE INTO {quote(table)}({columns}) VALUES({marks})", list(row.values()))
tables = {}
for table in ddl:
    if ddl[table].startswith("DROP"):
        continue
    cols = [r[0] for r in db.execute("SELECT name FROM pragma_table_xinfo(?) WHERE hidden NOT IN (2, 3)", (table,))]
    rows = db.execute(f"SELECT {', '.join(quote(c) for c in cols)} FROM {quote(table)}").fetchall()
    tables[table] = [dict(zip(cols, r)) for r in rows]
print(json.dumps({
    "tables": tables,
    "records": len(records),
    "schema_records": len(schema),
    "problems": problems,
}))

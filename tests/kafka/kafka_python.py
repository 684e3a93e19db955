"""Drives silt's Kafka listener with kafka-python, a client independent of librdkafka.

Subcommands print one JSON line per event, for the Rust tests to check:
  produce BOOTSTRAP TOPIC N CODEC    acks=all; keys k<i>, values v<i>, a header h=<i>;
                                    CODEC is none or gzip; prints the delivered (partition, offset, key)
  consume BOOTSTRAP TOPIC GROUP IDLE_S  a group member that commits what it read and
                                    exits once IDLE_S pass with nothing new
  admin BOOTSTRAP TOPIC GROUP       creates, describes and deletes TOPIC, finds offsets by
                                    time, commits for GROUP; prints what each step saw
"""
import json
import os
import sys
import time

from kafka import KafkaConsumer, KafkaProducer


def produce(bootstrap, topic, n, codec):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                      compression_type=None if codec == "none" else codec, linger_ms=5)
    futures = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), headers=[("h", str(i).encode())])
               for i in range(n)]
    p.flush(60)
    delivered = []
    for i, f in enumerate(futures):
        m = f.get(timeout=60)
        delivered.append([m.partition, m.offset, f"k{i}"])
    p.close()
    print(json.dumps({"delivered": delivered, "errors": []}), flush=True)


def consume(bootstrap, topic, group, idle_s):
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500)
    # The idle clock starts at the first record (FIRST_WAIT_S at most
    # without one, a minute by default).
    first_wait = float(os.environ.get("FIRST_WAIT_S", "60"))
    start, last = time.time(), None
    n = 0
    while time.time() - (last or start) < (idle_s if last else first_wait):
        polled = c.poll(timeout_ms=200)
        for records in polled.values():
            for m in records:
                print(json.dumps({"record": [m.partition, m.offset, m.key.decode(), m.value.decode(),
                                             [[k, v.decode()] for k, v in m.headers]]}), flush=True)
                n += 1
        if polled:
            c.commit()
            last = time.time()
    print(json.dumps({"assignment": sorted(tp.partition for tp in c.assignment())}), flush=True)
    c.close()
    print(json.dumps({"done": n}), flush=True)


def admin(bootstrap, topic, group):
    """Topics, configs, groups and offsets by time through the admin and consumer APIs."""
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    out = {}
    a.create_topics([NewTopic(topic, 2, 1, topic_configs={"retention.ms": "3600000"})])
    try:
        a.create_topics([NewTopic(topic, 2, 1)])
        out["second_create"] = "ok"
    except TopicAlreadyExistsError:
        out["second_create"] = "TopicAlreadyExistsError"
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    out["configs"] = {k: v["value"] for k, v in res["topic"][topic].items()}
    a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})],
                    incremental=True)
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    out["altered"] = res["topic"][topic]["retention.ms"]["value"]
    out["brokers"] = len(a.describe_cluster()["brokers"])
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i, ts in enumerate([1_000, 2_000, 3_000, 4_000]):
        p.send(topic, key=b"k", value=f"t{ts}".encode(), partition=0, timestamp_ms=ts).get(timeout=30)
    p.close()
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    found = c.offsets_for_times({tp: 2_500})
    out["offset_for_2500"] = found[tp].offset if found[tp] else None
    found = c.offsets_for_times({tp: 9_000})
    out["offset_for_9000"] = found[tp].offset if found[tp] else None
    out["beginning"] = c.beginning_offsets([tp])[tp]
    out["end"] = c.end_offsets([tp])[tp]
    from kafka.structs import OffsetAndMetadata
    c.assign([tp])
    c.commit({tp: OffsetAndMetadata(3, "", -1)})
    out["committed"] = c.committed(tp)
    out["position_after_seek"] = c.position(tp)
    c.close()
    out["groups"] = sorted(g["group_id"] for g in a.list_groups())
    described = a.describe_groups([group])
    out["described"] = repr(described)[:300]
    out["deleted_group"] = repr(a.delete_groups([group]))
    out["groups_after_delete"] = sorted(g["group_id"] for g in a.list_groups() if g["group_id"] == group)
    a.delete_topics([topic])
    out["topics_after_delete"] = sorted(t for t in a.list_topics() if t == topic)
    a.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        produce(args[0], args[1], int(args[2]), args[3])
    elif cmd == "consume":
        consume(args[0], args[1], args[2], float(args[3]))
    elif cmd == "admin":
        admin(args[0], args[1], args[2])
    else:
        sys.exit(f"unknown command {cmd}")

"""Drives silt's Kafka listener with kafka-python, a client independent of librdkafka.

Subcommands print one JSON line per event, for the Rust tests to check:
  produce BOOTSTRAP TOPIC N CODEC    acks=all; keys k<i>, values v<i>, a header h=<i>;
                                    CODEC is none or gzip; prints the delivered (partition, offset, key)
  consume BOOTSTRAP TOPIC GROUP IDLE_S  a group member that commits what it read and
                                    exits once IDLE_S pass with nothing new
"""
import json
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
    last = time.time()
    n = 0
    while time.time() - last < idle_s:
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


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        produce(args[0], args[1], int(args[2]), args[3])
    elif cmd == "consume":
        consume(args[0], args[1], args[2], float(args[3]))
    else:
        sys.exit(f"unknown command {cmd}")

"""Drives silt's Kafka listener with confluent-kafka (librdkafka).

Subcommands print one JSON line each, for the Rust tests to check:
  produce BOOTSTRAP TOPIC N [DELAY_MS]     idempotent, acks=all; keys k<i>, values v<i>,
                                          a header h=<i>, DELAY_MS between records;
                                          prints the delivered (partition, offset, key)
  consume BOOTSTRAP TOPIC GROUP IDLE_S [MAX]  a group member that commits after each record
                                          and prints what it read once IDLE_S pass with nothing new;
                                          the classic protocol, or KIP-848's with GROUP_PROTOCOL=consumer

With SILT_SASL=MECHANISM:USER:PASSWORD (and SILT_CA=ca.pem for TLS) the
clients authenticate with SASL over TLS (SASL_PLAINTEXT without SILT_CA);
FLUSH_S bounds how long produce waits for deliveries (60 s by default).
"""
import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer


def security():
    """Client settings for SILT_SASL and SILT_CA."""
    conf = {}
    if os.environ.get("SILT_CA"):
        conf.update({"security.protocol": "SSL", "ssl.ca.location": os.environ["SILT_CA"]})
    if os.environ.get("SILT_SASL"):
        mechanism, user, password = os.environ["SILT_SASL"].split(":", 2)
        conf.update({
            "security.protocol": "SASL_SSL" if "ssl.ca.location" in conf else "SASL_PLAINTEXT",
            "sasl.mechanisms": mechanism,
            "sasl.username": user,
            "sasl.password": password,
        })
    return conf


def produce(bootstrap, topic, n, delay_ms=0):
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        **security(),
    })
    delivered, errors = [], []

    def report(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append([msg.partition(), msg.offset(), msg.key().decode()])

    for i in range(n):
        p.produce(topic, key=f"k{i}", value=f"v{i}", headers=[("h", str(i).encode())], on_delivery=report)
        p.poll(0)
        if delay_ms:
            time.sleep(delay_ms / 1000)
    left = p.flush(float(os.environ.get("FLUSH_S", "60")))
    print(json.dumps({"delivered": delivered, "errors": errors, "unflushed": left}), flush=True)


def consume(bootstrap, topic, group, idle_s, max_records=None):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        **security(),
    }
    if os.environ.get("GROUP_PROTOCOL") == "consumer":
        # KIP-848: the coordinator assigns; sessions are the broker's to set.
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c = Consumer(conf)
    c.subscribe([topic])
    got = []
    # The idle clock starts at the first record (FIRST_WAIT_S at most
    # without one, a minute by default).
    first_wait = float(os.environ.get("FIRST_WAIT_S", "60"))
    start, last = time.time(), None
    while time.time() - (last or start) < (idle_s if last else first_wait):
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                print(json.dumps({"error": str(m.error())}), file=sys.stderr, flush=True)
            continue
        got.append([m.partition(), m.offset(), m.key().decode(), m.value().decode(),
                    [[k, v.decode()] for k, v in (m.headers() or [])]])
        # Printed before it is committed: a member killed in between has
        # shown the record, and its successor may read it again.
        print(json.dumps({"record": got[-1]}), flush=True)
        c.commit(message=m, asynchronous=False)
        last = time.time()
        if max_records is not None and len(got) >= max_records:
            break
    print(json.dumps({"assignment": sorted([tp.partition for tp in c.assignment()])}), flush=True)
    c.close()
    print(json.dumps({"done": len(got)}), flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        produce(args[0], args[1], int(args[2]), int(args[3]) if len(args) > 3 else 0)
    elif cmd == "consume":
        consume(args[0], args[1], args[2], float(args[3]), int(args[4]) if len(args) > 4 else None)
    else:
        sys.exit(f"unknown command {cmd}")

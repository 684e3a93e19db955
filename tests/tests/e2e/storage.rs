//! Storage over time: topic configs, retention, compaction of flush
//! objects, key-compacted topics and garbage collection, through the
//! `silt` binary and the SDK against real agents.

use crate::harness::*;

#[test]
fn topic_configs_are_set_shown_altered_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&dir.path().join("a"), &["--max-record-bytes", "64KiB"]);
    agent.ok(
        &["topic", "create", "c", "-p", "2", "--config", "retention.ms=60000", "--config", "max.message.bytes=1000"],
        None,
    );
    let describe = |name: &str| String::from_utf8(agent.ok(&["topic", "describe", name], None)).unwrap();
    let text = describe("c");
    assert_eq!(text.lines().nth(1), Some("CONFIGS max.message.bytes=1000,retention.ms=60000"), "{text}");

    // The topic's record limit applies to producers.
    let mut big = vec![b'v'; 1001];
    big.push(b'\n');
    let out = agent.cli_with_input(&["produce", "c"], Some(&big));
    assert!(!out.status.success() && stderr(&out).contains("maximum record size of 1000 bytes"), "{}", stderr(&out));
    agent.ok(&["produce", "c"], Some(&[vec![b'v'; 1000], b"\n".to_vec()].concat()));

    agent.ok(
        &[
            "topic",
            "alter",
            "c",
            "--config",
            "cleanup.policy=compact,delete",
            "--config",
            "retention.ms=-1",
            "--delete-config",
            "max.message.bytes",
        ],
        None,
    );
    let text = describe("c");
    assert_eq!(text.lines().nth(1), Some("CONFIGS cleanup.policy=compact,delete,retention.ms=-1"), "{text}");
    let mut big = vec![b'v'; 1001];
    big.push(b'\n');
    agent.ok(&["produce", "c"], Some(&big));

    // Bad keys and values are refused, naming the key; nothing changes.
    let before = describe("c");
    let cases: &[(&[&str], &str)] = &[
        (&["topic", "create", "d", "--config", "retention.hours=1"], "retention.hours"),
        (&["topic", "create", "d", "--config", "retention.ms=0"], "retention.ms"),
        (&["topic", "create", "d", "--config", "segment.bytes=12"], "segment.bytes"),
        (&["topic", "create", "d", "--config", "cleanup.policy=shred"], "cleanup.policy"),
        (&["topic", "create", "d", "--config", "max.message.bytes=1000000"], "max.message.bytes"),
        (&["topic", "create", "d", "--config", "noequals"], "KEY=VALUE"),
        (&["topic", "alter", "c", "--config", "retention.bytes=-5"], "retention.bytes"),
        (&["topic", "alter", "c", "--config", "retention.ms=5", "--config", "segment.bytes=x"], "segment.bytes"),
        (&["topic", "alter", "c", "--delete-config", "nope"], "nope"),
        (&["topic", "alter", "c"], "nothing to change"),
        (&["topic", "alter", "missing", "--config", "retention.ms=5"], "\"missing\" does not exist"),
    ];
    for (args, expect) in cases {
        let out = agent.cli(args);
        assert!(!out.status.success(), "silt {args:?} should fail");
        assert!(stderr(&out).contains(expect), "silt {args:?}: expected {expect:?} in {}", stderr(&out));
    }
    assert_eq!(describe("c"), before, "refused changes changed nothing");
    assert_eq!(agent.ok(&["topic", "list"], None), b"c\n", "refused creates created nothing");

    // The agents' defaults are flags, checked at start.
    let out = run_silt(
        &["agent", "--data-dir", dir.path().join("b").to_str().unwrap(), "--retention-ms", "0"],
        None,
        &[],
        None,
    );
    assert!(!out.status.success() && stderr(&out).contains("--retention-ms"), "{}", stderr(&out));
}

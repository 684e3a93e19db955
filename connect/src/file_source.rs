//! The `file` source: tails a file, or every file a glob matches, one
//! record per line (keyed by the file's path, so each file's lines keep
//! their order in one partition). It follows rotation: when the path
//! names a new file (renamed away and created again), the old one is read
//! to its end first; a file cut shorter than what was read is read again
//! from its start. A line is sent once it ends with a newline.
//!
//! Progress is each file's inode and the byte offset after its last sent
//! line, committed after the records up to it are acknowledged
//! (acks=durable), so a restart re-sends at most what was not yet
//! acknowledged.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use anyhow::Context;
use silt_client::{ErrorCode, Producer, ProducerConfig, ProducerRecord};

use crate::config::FileSource;
use crate::worker::{Task, TaskError};

/// How often files are looked at when nothing new was read.
const POLL: Duration = Duration::from_millis(200);
/// Bytes read from one file per step.
const CHUNK: usize = 1 << 20;

/// Where reading a file has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    inode: u64,
    offset: u64,
}

fn parse_position(text: &str) -> BTreeMap<String, Pos> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return BTreeMap::new() };
    let Some(files) = v.get("files").and_then(|f| f.as_object()) else { return BTreeMap::new() };
    files
        .iter()
        .filter_map(|(path, p)| {
            Some((path.clone(), Pos { inode: p.get("inode")?.as_u64()?, offset: p.get("offset")?.as_u64()? }))
        })
        .collect()
}

fn render_position(files: &BTreeMap<String, Pos>) -> String {
    let files: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(path, p)| (path.clone(), serde_json::json!({"inode": p.inode, "offset": p.offset})))
        .collect();
    serde_json::json!({ "files": files }).to_string()
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => matches(&pattern[1..], name) || (!name.is_empty() && matches(pattern, &name[1..])),
        (Some(b'?'), Some(_)) => matches(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// The files `path` names now: itself, or what its glob matches, sorted.
fn expand(path: &str) -> Vec<String> {
    let (dir, file) = path.rsplit_once('/').unwrap_or((".", path));
    if !file.contains(['*', '?']) {
        return vec![path.to_string()];
    }
    let dir = if dir.is_empty() { "/" } else { dir };
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| matches(file.as_bytes(), n.as_bytes()))
        .map(|n| format!("{}/{n}", dir.trim_end_matches('/')))
        .collect();
    out.sort();
    out
}

/// A file being read.
struct Tail {
    file: std::fs::File,
    pos: Pos,
}

/// Reads the complete lines after `tail.pos` (up to [`CHUNK`] bytes), and
/// whether that reached the file's end.
fn read_lines(tail: &mut Tail) -> std::io::Result<(Vec<Vec<u8>>, bool)> {
    tail.file.seek(SeekFrom::Start(tail.pos.offset))?;
    let mut buf = Vec::with_capacity(64 * 1024);
    (&mut tail.file).take(CHUNK as u64).read_to_end(&mut buf)?;
    let at_end = buf.len() < CHUNK;
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else { return Ok((Vec::new(), at_end)) };
    let lines = buf[..end].split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    tail.pos.offset += end as u64 + 1;
    Ok((lines, at_end))
}

/// The file in `path`'s folder with inode `inode` (where a rotation moved it).
fn find_inode(path: &str, inode: u64) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty())?;
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == inode))
}

fn open(path: &str, known: Option<Pos>) -> std::io::Result<Tail> {
    if let Some(k) = known {
        // Rotated while nobody read it: finish the old file (found by its
        // inode) first; `step` moves on to the new one at its end.
        if std::fs::metadata(path).is_ok_and(|m| m.ino() != k.inode) {
            if let Some(old) = find_inode(path, k.inode) {
                let file = std::fs::File::open(old)?;
                if file.metadata()?.len() >= k.offset {
                    return Ok(Tail { file, pos: k });
                }
            }
        }
    }
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let inode = meta.ino();
    let offset = match known {
        Some(p) if p.inode == inode && p.offset <= meta.len() => p.offset,
        _ => 0,
    };
    Ok(Tail { file, pos: Pos { inode, offset } })
}

pub async fn run(task: &Task, config: &FileSource) -> Result<(), TaskError> {
    match task.client.create_topic(&config.topic, 1).await {
        Err(e) if e.code() != Some(ErrorCode::TopicExists) => {
            return Err(anyhow::Error::from(e).context(format!("creating topic {}", config.topic)).into())
        }
        _ => {}
    }
    let producer = Producer::new(task.client.clone(), &config.topic, ProducerConfig::default())
        .await
        .with_context(|| format!("producing to {}", config.topic))?;
    let mut committed = parse_position(&task.position());
    let mut tails: BTreeMap<String, Tail> = BTreeMap::new();
    let result = loop {
        if task.stop.is_cancelled() {
            break Ok(());
        }
        let step = tokio::task::block_in_place(|| step(&config.path, &mut tails, &committed));
        let (lines, positions) = match step {
            Ok(s) => s,
            Err(e) => break Err(TaskError::Failed(e)),
        };
        if lines.is_empty() {
            if positions != committed {
                // A rotation or a new file, with nothing to send yet.
                committed = positions;
                if let Err(e) = task.commit(render_position(&committed)).await {
                    break Err(e);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = task.stop.cancelled() => {}
            }
            continue;
        }
        for (path, line) in lines {
            if let Err(e) = producer.send(ProducerRecord::new(line).with_key(path.into_bytes())).await {
                return Err(anyhow::Error::from(e).context("sending a line").into());
            }
        }
        // Acknowledged (durable) before the position moves past them.
        if let Err(e) = producer.flush().await {
            break Err(anyhow::Error::from(e).context("a line was not acknowledged").into());
        }
        committed = positions;
        if let Err(e) = task.commit(render_position(&committed)).await {
            break Err(e);
        }
    };
    let _ = producer.close().await;
    result
}

type Lines = Vec<(String, Vec<u8>)>;

/// One look at every file: the new complete lines, and the positions after them.
fn step(
    pattern: &str,
    tails: &mut BTreeMap<String, Tail>,
    committed: &BTreeMap<String, Pos>,
) -> anyhow::Result<(Lines, BTreeMap<String, Pos>)> {
    let mut lines = Vec::new();
    let paths = expand(pattern);
    tails.retain(|p, _| paths.contains(p));
    for path in &paths {
        if !tails.contains_key(path) {
            match open(path, committed.get(path).copied()) {
                Ok(t) => {
                    tails.insert(path.clone(), t);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(anyhow::Error::from(e).context(format!("opening {path}"))),
            }
        }
        let tail = tails.get_mut(path).expect("opened above");
        let (read, drained) = read_lines(tail).with_context(|| format!("reading {path}"))?;
        lines.extend(read.into_iter().map(|l| (path.clone(), l)));
        // Rotation: the path names another file now. Once the old one is
        // read to its end, go on with the new one from its start.
        match std::fs::metadata(path) {
            Ok(meta) if meta.ino() != tail.pos.inode && drained => {
                if let Ok(t) = open(path, None) {
                    *tail = t;
                    let (read, _) = read_lines(tail).with_context(|| format!("reading {path}"))?;
                    lines.extend(read.into_iter().map(|l| (path.clone(), l)));
                }
            }
            Ok(meta) if meta.ino() == tail.pos.inode && meta.len() < tail.pos.offset => {
                tail.pos.offset = 0; // cut shorter: read again from the start
            }
            _ => {}
        }
    }
    let positions = tails.iter().map(|(p, t)| (p.clone(), t.pos)).collect();
    Ok((lines, positions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_file_names() {
        for (pattern, name, want) in [
            ("*.log", "app.log", true),
            ("*.log", "app.log.1", false),
            ("app-?.log", "app-1.log", true),
            ("app-?.log", "app-10.log", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ] {
            assert_eq!(matches(pattern.as_bytes(), name.as_bytes()), want, "{pattern} {name}");
        }
    }

    #[test]
    fn positions_round_trip_and_garbage_starts_over() {
        let mut files = BTreeMap::new();
        files.insert("/var/log/a.log".to_string(), Pos { inode: 7, offset: 99 });
        assert_eq!(parse_position(&render_position(&files)), files);
        assert!(parse_position("").is_empty());
        assert!(parse_position("{\"files\": 3}").is_empty());
    }

    #[test]
    fn steps_read_whole_lines_and_follow_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let p = path.to_str().unwrap().to_string();
        std::fs::write(&path, "one\ntwo\npart").unwrap();
        let mut tails = BTreeMap::new();
        let text = |l: &Lines| l.iter().map(|(_, v)| String::from_utf8(v.clone()).unwrap()).collect::<Vec<_>>();
        let (lines, pos) = step(&p, &mut tails, &BTreeMap::new()).unwrap();
        assert_eq!(text(&lines), ["one", "two"]);
        assert_eq!(pos[&p].offset, 8);
        // The partial line completes; then the file is rotated.
        std::fs::write(&path, "one\ntwo\npartial\nthree\n").unwrap();
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        std::fs::write(&path, "new\n").unwrap();
        let (lines, pos) = step(&p, &mut tails, &BTreeMap::new()).unwrap();
        assert_eq!(text(&lines), ["partial", "three", "new"], "the old file is read to its end first");
        assert_eq!(pos[&p].offset, 4);
        // Cut shorter than what was read: read again from the start.
        std::fs::write(&path, "").unwrap();
        step(&p, &mut tails, &BTreeMap::new()).unwrap();
        std::fs::write(&path, "again\n").unwrap();
        let (lines, _) = step(&p, &mut tails, &BTreeMap::new()).unwrap();
        assert_eq!(text(&lines), ["again"]);
        // A restart resumes from the committed position of the same file.
        let committed = pos_of(&tails, &p);
        let mut fresh = BTreeMap::new();
        std::fs::write(&path, "again\nmore\n").unwrap();
        let (lines, _) = step(&p, &mut fresh, &committed).unwrap();
        assert_eq!(text(&lines), ["more"]);
        // Rotated while nobody read it: the old file's rest comes first.
        let committed = pos_of(&fresh, &p);
        std::fs::write(&path, "again\nmore\nunread\n").unwrap();
        std::fs::rename(&path, dir.path().join("app.log.2")).unwrap();
        std::fs::write(&path, "fresh\n").unwrap();
        let mut restarted = BTreeMap::new();
        let (lines, _) = step(&p, &mut restarted, &committed).unwrap();
        assert_eq!(text(&lines), ["unread", "fresh"]);
    }

    fn pos_of(tails: &BTreeMap<String, Tail>, p: &str) -> BTreeMap<String, Pos> {
        tails.iter().filter(|(k, _)| *k == p).map(|(k, t)| (k.clone(), t.pos)).collect()
    }
}

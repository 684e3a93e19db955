//! The `postgres` source: change data capture through logical replication
//! (`pgoutput`, carried by `pgwire-replication`).
//!
//! On first start it creates the publication (for the configured tables)
//! and the replication slot, reads every table in the slot's snapshot
//! (`op` = `r`), then streams inserts (`c`), updates (`u`) and deletes
//! (`d`, followed by a tombstone for the key). Each change is one record
//! in `PREFIX.schema.table`, keyed by the row's primary key as JSON, with a
//! JSON value in Debezium's envelope: `before`, `after`, `op`, `source`
//! (`db`, `schema`, `table`, `lsn`, `snapshot`) and `ts_ms`.
//!
//! Progress: the source's position is the LSN of the last transaction
//! whose records were all acknowledged (acks=durable), followed in commit
//! order while the stream goes on being read; only then is it confirmed
//! to the server (so the slot keeps everything after it) and
//! stored as the connector's progress. A crash re-sends at most what came
//! after it. A crash during the snapshot starts the snapshot again with a
//! new slot.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{bail, Context};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use serde_json::{json, Map, Value};
use silt_client::{Delivery, ErrorCode, Producer, ProducerConfig, ProducerRecord};

use crate::config::PostgresSource;
use crate::pgoutput::{self, Column, Datum, Message, Relation};
use crate::worker::{Task, TaskError};

/// How often acknowledged transactions are confirmed to the server and stored.
const CONFIRM_EVERY: Duration = Duration::from_millis(200);
/// Rows read per step of the snapshot.
const SNAPSHOT_PAGE: usize = 10_000;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Where a `postgres://user[:password]@host[:port]/database` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub database: String,
}

pub fn parse_url(url: &str) -> Result<PgUrl, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| format!("{url:?} is not a postgres:// URL"))?;
    let (auth, rest) =
        rest.rsplit_once('@').ok_or_else(|| format!("{url:?} names no user (postgres://USER@HOST/DB)"))?;
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, database) = rest.split_once('/').ok_or_else(|| format!("{url:?} names no database"))?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("{p:?} is not a port"))?),
        None => (hostport, 5432),
    };
    if user.is_empty() || host.is_empty() || database.is_empty() {
        return Err(format!("{url:?} needs a user, a host and a database"));
    }
    Ok(PgUrl { user: user.into(), password: password.into(), host: host.into(), port, database: database.into() })
}

/// `schema.table` (or `table`, in `public`), split.
pub fn split_table(t: &str) -> (String, String) {
    match t.split_once('.') {
        Some((s, n)) => (s.to_string(), n.to_string()),
        None => ("public".to_string(), t.to_string()),
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn replication(config: &PostgresSource, url: &PgUrl) -> ReplicationConfig {
    ReplicationConfig::new(
        &url.host,
        &url.user,
        &url.password,
        &url.database,
        &config.slot,
        config.publication.as_str(),
    )
    .with_port(url.port)
    .with_tls(pgwire_replication::TlsConfig::disabled())
    .with_application_name(format!("silt-{}", config.slot))
}

fn text(row: &[Option<bytes::Bytes>], i: usize) -> String {
    row.get(i).cloned().flatten().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// A table's columns (name, type, whether in the primary key), in order.
async fn columns(repl: &mut ReplicationClient, schema: &str, table: &str) -> anyhow::Result<Vec<Column>> {
    let sql = format!(
        "SELECT a.attname, a.atttypid::int8, coalesce(bool_or(i.indisprimary), false) \
         FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND a.attnum = ANY(i.indkey) AND i.indisprimary \
         WHERE a.attrelid = {}::regclass AND a.attnum > 0 AND NOT a.attisdropped \
         GROUP BY a.attnum, a.attname, a.atttypid ORDER BY a.attnum",
        literal(&format!("{}.{}", quote(schema), quote(table)))
    );
    let rows = repl.simple_query(&sql).await.with_context(|| format!("reading the columns of {schema}.{table}"))?;
    if rows.is_empty() {
        bail!("table {schema}.{table} has no columns (does it exist?)");
    }
    Ok(rows
        .iter()
        .map(|r| Column { name: text(r, 0), type_oid: text(r, 1).parse().unwrap_or(25), key: text(r, 2) == "t" })
        .collect())
}

/// Checks that the database answers and every table exists with a primary
/// key (`connector create` runs it, so a bad config is refused at once).
pub async fn check(config: &PostgresSource) -> anyhow::Result<()> {
    let url = parse_url(&config.url).map_err(anyhow::Error::msg)?;
    let mut repl =
        tokio::time::timeout(Duration::from_secs(10), ReplicationClient::connect_gated(replication(config, &url)))
            .await
            .map_err(|_| anyhow::anyhow!("{}:{} did not answer in 10 s", url.host, url.port))?
            .with_context(|| format!("connecting to {}:{}", url.host, url.port))?;
    for t in &config.tables {
        let (schema, table) = split_table(t);
        let cols = columns(&mut repl, &schema, &table).await?;
        if !cols.iter().any(|c| c.key) {
            bail!("table {t} has no primary key: its changes could not be keyed");
        }
    }
    let level = repl.simple_query("SHOW wal_level").await.context("reading wal_level")?;
    if level.first().map(|r| text(r, 0)).as_deref() != Some("logical") {
        bail!("the server's wal_level is not logical (set wal_level = logical and restart it)");
    }
    drop(repl);
    Ok(())
}

fn row_json(columns: &[Column], values: &[Datum]) -> Value {
    let mut m = Map::new();
    for (c, v) in columns.iter().zip(values) {
        m.insert(c.name.clone(), pgoutput::json_value(v, c.type_oid));
    }
    Value::Object(m)
}

fn key_json(columns: &[Column], values: &[Datum]) -> Vec<u8> {
    let mut m = Map::new();
    for (c, v) in columns.iter().zip(values).filter(|(c, _)| c.key) {
        m.insert(c.name.clone(), pgoutput::json_value(v, c.type_oid));
    }
    serde_json::to_vec(&Value::Object(m)).expect("JSON encodes")
}

/// A change record (and, after a delete, its tombstone).
struct Change<'a> {
    db: &'a str,
    relation: &'a Relation,
    op: &'static str,
    before: Option<&'a [Datum]>,
    after: Option<&'a [Datum]>,
    lsn: u64,
    ts_ms: i64,
    snapshot: bool,
}

impl Change<'_> {
    fn records(&self) -> Vec<ProducerRecord> {
        let cols = &self.relation.columns;
        let value = json!({
            "before": self.before.map(|b| row_json(cols, b)),
            "after": self.after.map(|a| row_json(cols, a)),
            "op": self.op,
            "source": {
                "connector": "silt",
                "db": self.db,
                "schema": self.relation.schema,
                "table": self.relation.name,
                "lsn": self.lsn,
                "snapshot": self.snapshot,
            },
            "ts_ms": self.ts_ms,
        });
        let row = self.after.or(self.before).unwrap_or_default();
        // An old tuple may hold only the key columns: key by those.
        let key = match self.after {
            Some(a) => key_json(cols, a),
            None if row.len() == cols.len() => key_json(cols, row),
            None => {
                let keys: Vec<Column> = cols.iter().filter(|c| c.key).cloned().collect();
                let mut m = Map::new();
                for (c, v) in keys.iter().zip(row) {
                    m.insert(c.name.clone(), pgoutput::json_value(v, c.type_oid));
                }
                serde_json::to_vec(&Value::Object(m)).expect("JSON encodes")
            }
        };
        let record = ProducerRecord::new(serde_json::to_vec(&value).expect("JSON encodes")).with_key(key.clone());
        match self.op {
            "d" => vec![record, ProducerRecord::tombstone(key)],
            _ => vec![record],
        }
    }
}

/// The source's progress: the last confirmed LSN, and whether the snapshot is done.
fn parse_position(text: &str) -> (u64, bool) {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    (v["lsn"].as_u64().unwrap_or(0), v["snapshot_done"].as_bool().unwrap_or(false))
}

fn render_position(lsn: u64) -> String {
    json!({ "lsn": lsn, "lsn_text": Lsn(lsn).to_string(), "snapshot_done": true }).to_string()
}

fn topic_of(config: &PostgresSource, schema: &str, table: &str) -> String {
    format!("{}.{schema}.{table}", config.topic_prefix)
}

async fn producers(task: &Task, config: &PostgresSource) -> Result<HashMap<String, Producer>, TaskError> {
    let mut out = HashMap::new();
    for t in &config.tables {
        let (schema, table) = split_table(t);
        let topic = topic_of(config, &schema, &table);
        match task.client.create_topic(&topic, config.partitions).await {
            Err(e) if e.code() != Some(ErrorCode::TopicExists) => {
                return Err(anyhow::Error::from(e).context(format!("creating topic {topic}")).into())
            }
            _ => {}
        }
        let p = Producer::new(task.client.clone(), &topic, ProducerConfig::default())
            .await
            .with_context(|| format!("producing to {topic}"))?;
        out.insert(topic, p);
    }
    Ok(out)
}

async fn flush_all(producers: &HashMap<String, Producer>) -> Result<(), TaskError> {
    for (topic, p) in producers {
        p.flush().await.with_context(|| format!("a change to {topic} was not acknowledged"))?;
    }
    Ok(())
}

/// Sends `records`; their deliveries are added to `waits`, one per batch.
async fn send(
    producers: &HashMap<String, Producer>,
    topic: &str,
    records: Vec<ProducerRecord>,
    waits: &mut Vec<Delivery>,
) -> Result<(), TaskError> {
    let p = producers.get(topic).ok_or_else(|| anyhow::anyhow!("no producer for {topic}"))?;
    for r in records {
        let d = p.send(r).await.with_context(|| format!("sending a change to {topic}"))?;
        if !waits.last().is_some_and(|last| last.same_batch(&d)) {
            waits.push(d);
        }
    }
    Ok(())
}

/// A transaction's acknowledgement: its commit LSN once every record is acknowledged.
type Acked = Pin<Box<dyn Future<Output = Result<u64, TaskError>> + Send>>;

/// Resolves with `lsn` once every delivery is acknowledged.
fn acked(lsn: u64, waits: Vec<Delivery>) -> Acked {
    Box::pin(async move {
        for d in waits {
            d.await.context("a change was not acknowledged")?;
        }
        Ok(lsn)
    })
}

/// Creates the publication if missing, and the slot with a snapshot that
/// every table is read in. Returns the LSN streaming starts from.
async fn snapshot(
    task: &Task,
    config: &PostgresSource,
    url: &PgUrl,
    producers: &HashMap<String, Producer>,
) -> Result<u64, TaskError> {
    let mut repl = ReplicationClient::connect_gated(replication(config, url))
        .await
        .with_context(|| format!("connecting to {}:{}", url.host, url.port))?;
    let exists = repl
        .simple_query(&format!("SELECT 1 FROM pg_publication WHERE pubname = {}", literal(&config.publication)))
        .await
        .context("looking for the publication")?;
    if exists.is_empty() {
        let tables: Vec<String> = config
            .tables
            .iter()
            .map(|t| {
                let (s, n) = split_table(t);
                format!("{}.{}", quote(&s), quote(&n))
            })
            .collect();
        let sql = format!("CREATE PUBLICATION {} FOR TABLE {}", quote(&config.publication), tables.join(", "));
        repl.simple_query(&sql).await.context("creating the publication")?;
    }
    let slot = repl
        .simple_query(&format!("SELECT 1 FROM pg_replication_slots WHERE slot_name = {}", literal(&config.slot)))
        .await
        .context("looking for the slot")?;
    if !slot.is_empty() {
        // A snapshot that did not finish: start it again.
        repl.simple_query(&format!("DROP_REPLICATION_SLOT {}", quote(&config.slot)))
            .await
            .context("dropping the slot")?;
    }
    repl.simple_query("BEGIN ISOLATION LEVEL REPEATABLE READ").await.context("starting the snapshot")?;
    let created = repl
        .simple_query(&format!("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'use')", quote(&config.slot)))
        .await
        .context("creating the replication slot")?;
    let start = created.first().map(|r| text(r, 1)).unwrap_or_default();
    let start = Lsn::parse(&start).map_err(|e| anyhow::anyhow!("the slot's consistent point: {e}"))?;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    for t in &config.tables {
        let (schema, table) = split_table(t);
        let cols = columns(&mut repl, &schema, &table).await?;
        let relation = Relation { id: 0, schema: schema.clone(), name: table.clone(), columns: cols };
        let list: Vec<String> = relation.columns.iter().map(|c| quote(&c.name)).collect();
        let sql = format!(
            "DECLARE silt_snapshot CURSOR FOR SELECT {} FROM {}.{}",
            list.join(", "),
            quote(&schema),
            quote(&table)
        );
        repl.simple_query(&sql).await.with_context(|| format!("reading {t}"))?;
        let topic = topic_of(config, &schema, &table);
        // A page at a time, so a large table is never held whole.
        loop {
            let fetch = format!("FETCH {SNAPSHOT_PAGE} FROM silt_snapshot");
            let rows = repl.simple_query(&fetch).await.with_context(|| format!("reading {t}"))?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let values: Vec<Datum> = row
                    .iter()
                    .map(|v| match v {
                        Some(b) => Datum::Text(String::from_utf8_lossy(b).into_owned()),
                        None => Datum::Null,
                    })
                    .collect();
                let change = Change {
                    db: &url.database,
                    relation: &relation,
                    op: "r",
                    before: None,
                    after: Some(&values),
                    lsn: start.0,
                    ts_ms: now_ms,
                    snapshot: true,
                };
                send(producers, &topic, change.records(), &mut Vec::new()).await?;
            }
        }
        repl.simple_query("CLOSE silt_snapshot").await.with_context(|| format!("reading {t}"))?;
    }
    repl.simple_query("COMMIT").await.context("ending the snapshot")?;
    drop(repl);
    flush_all(producers).await?;
    task.commit(render_position(start.0)).await?;
    tracing::info!(connector = %task.name, lsn = %start, "snapshot done");
    Ok(start.0)
}

pub async fn run(task: &Task, config: &PostgresSource) -> Result<(), TaskError> {
    let url = parse_url(&config.url).map_err(anyhow::Error::msg)?;
    let producers = producers(task, config).await?;
    let (mut confirmed, done) = parse_position(&task.position());
    if !done {
        confirmed = snapshot(task, config, &url, &producers).await?;
    }
    let cfg = replication(config, &url).with_start_lsn(Lsn(confirmed)).with_ack_lsn(Lsn(confirmed));
    let mut repl =
        ReplicationClient::connect(cfg).await.with_context(|| format!("connecting to {}:{}", url.host, url.port))?;
    repl.wait_started().await.context("starting replication")?;
    let wanted: Vec<(String, String)> = config.tables.iter().map(|t| split_table(t)).collect();
    let mut relations: HashMap<u32, Relation> = HashMap::new();
    let mut commit_ms = 0i64;
    // Each committed transaction waits for its records' acknowledgements,
    // in commit order, while the stream goes on being read.
    let mut txn: Vec<Delivery> = Vec::new();
    let mut committed: VecDeque<(u64, Vec<Delivery>)> = VecDeque::new();
    let mut waiting: Option<Acked> = None;
    let mut acknowledged = confirmed;
    let mut confirm = tokio::time::interval(CONFIRM_EVERY);
    confirm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        if waiting.is_none() {
            waiting = committed.pop_front().map(|(lsn, waits)| acked(lsn, waits));
        }
        let event = tokio::select! {
            e = repl.recv() => e,
            a = async { waiting.as_mut().expect("polled only when some").await }, if waiting.is_some() => {
                waiting = None;
                match a {
                    Ok(lsn) => acknowledged = lsn,
                    Err(e) => break Err(e),
                }
                continue;
            }
            _ = confirm.tick() => {
                if acknowledged > confirmed {
                    // Everything up to this commit is acknowledged: confirm it.
                    confirmed = acknowledged;
                    repl.update_applied_lsn(Lsn(confirmed));
                    if let Err(e) = task.commit(render_position(confirmed)).await {
                        break Err(e);
                    }
                }
                continue;
            }
            _ = task.stop.cancelled() => break Ok(()),
        };
        let event = match event {
            Ok(Some(e)) => e,
            Ok(None) => break Err(anyhow::anyhow!("the replication stream ended").into()),
            Err(e) => break Err(anyhow::Error::from(e).context("replication").into()),
        };
        match event {
            ReplicationEvent::Begin { commit_time_micros, .. } => {
                commit_ms = (commit_time_micros + PG_EPOCH_MICROS) / 1000;
            }
            ReplicationEvent::Commit { end_lsn, .. } => committed.push_back((end_lsn.0, std::mem::take(&mut txn))),
            ReplicationEvent::XLogData { wal_start, data, .. } => {
                let message = match pgoutput::decode(&data) {
                    Ok(m) => m,
                    Err(e) => break Err(anyhow::Error::from(e).into()),
                };
                let (relation, op, before, after) = match message {
                    Message::Relation(r) => {
                        relations.insert(r.id, r);
                        continue;
                    }
                    Message::Insert { relation, new } => (relation, "c", None, Some(new)),
                    Message::Update { relation, old, new } => (relation, "u", old, Some(new)),
                    Message::Delete { relation, old } => (relation, "d", Some(old), None),
                    Message::Other(_) => continue,
                };
                let Some(rel) = relations.get(&relation) else {
                    break Err(anyhow::anyhow!("a change to relation {relation} before its description").into());
                };
                if !wanted.iter().any(|(s, t)| *s == rel.schema && *t == rel.name) {
                    continue;
                }
                let change = Change {
                    db: &url.database,
                    relation: rel,
                    op,
                    before: before.as_deref(),
                    after: after.as_deref(),
                    lsn: wal_start.0,
                    ts_ms: commit_ms,
                    snapshot: false,
                };
                let topic = topic_of(config, &rel.schema, &rel.name);
                if let Err(e) = send(&producers, &topic, change.records(), &mut txn).await {
                    break Err(e);
                }
            }
            _ => {}
        }
    };
    repl.stop();
    for (_, p) in producers {
        let _ = p.close().await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_url("postgres://silt@127.0.0.1:5433/shop"),
            Ok(PgUrl {
                user: "silt".into(),
                password: "".into(),
                host: "127.0.0.1".into(),
                port: 5433,
                database: "shop".into()
            })
        );
        assert_eq!(parse_url("postgresql://u:p@db/x").map(|u| (u.password, u.port)), Ok(("p".to_string(), 5432)));
        for bad in ["mysql://u@h/d", "postgres://h/d", "postgres://u@h", "postgres://u@h:port/d", "postgres://@h/d"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn changes_carry_the_envelope_and_deletes_a_tombstone() {
        let relation = Relation {
            id: 1,
            schema: "public".into(),
            name: "orders".into(),
            columns: vec![
                Column { name: "id".into(), type_oid: 23, key: true },
                Column { name: "note".into(), type_oid: 25, key: false },
            ],
        };
        let old = [Datum::Text("7".into())];
        let delete = Change {
            db: "shop",
            relation: &relation,
            op: "d",
            before: Some(&old),
            after: None,
            lsn: 99,
            ts_ms: 5,
            snapshot: false,
        };
        let records = delete.records();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].key.as_deref(), Some(&b"{\"id\":7}"[..]));
        let v: Value = serde_json::from_slice(records[0].value.as_deref().unwrap()).unwrap();
        assert_eq!(v["op"], "d");
        assert_eq!(v["after"], Value::Null);
        assert_eq!(v["source"]["table"], "orders");
        assert_eq!(v["source"]["lsn"], 99);
        assert_eq!(records[1].value, None, "a tombstone follows");
        let new = [Datum::Text("8".into()), Datum::Text("hi".into())];
        let insert = Change {
            db: "shop",
            relation: &relation,
            op: "c",
            before: None,
            after: Some(&new),
            lsn: 100,
            ts_ms: 6,
            snapshot: false,
        };
        let v: Value = serde_json::from_slice(insert.records()[0].value.as_deref().unwrap()).unwrap();
        assert_eq!(v["after"], json!({"id": 8, "note": "hi"}));
        assert_eq!(v["before"], Value::Null);
    }
}

//! Connectors: `0x0b | name -> ConnectorRecord`, and the workers that run
//! them: `0x0c | worker id -> expiry ms`.
//!
//! A connector's config is the TOML text it was created with (the workers
//! understand it; the catalog keeps it). It is run by whichever worker
//! holds its claim: claims have an epoch that moves on every take, so a
//! worker that was paused or cut off cannot commit progress over its
//! successor's (see [`Catalog::commit_connector`]).

use bytes::BufMut;

use crate::codec::{CodecError, Reader, Writer};
use crate::CatalogError;

use super::{corrupt, keys, read, scan_prefix, Catalog};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectorRecord {
    /// The connector's config, as TOML.
    pub config: String,
    pub paused: bool,
    /// Run by a `silt connect --standalone` process, never by the pool.
    pub standalone: bool,
    /// The worker holding the claim ("" when none).
    pub holder: String,
    /// Moves on every take.
    pub epoch: u64,
    /// The claim lapses at this time unless renewed.
    pub expires_ms: i64,
    /// A source's progress, as the connector writes it.
    pub position: String,
    /// The last error the running worker reported, and when.
    pub error: String,
    pub error_ms: i64,
}

impl ConnectorRecord {
    /// Whether `worker` holds a live claim at `now`.
    pub fn held_by(&self, worker: &str, now: i64) -> bool {
        self.holder == worker && self.expires_ms > now
    }

    /// Whether anyone holds a live claim at `now`.
    pub fn claimed(&self, now: i64) -> bool {
        !self.holder.is_empty() && self.expires_ms > now
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.config.len() + self.position.len() + self.error.len());
        v.put_u8(1);
        v.put_str(&self.config);
        v.put_u8(u8::from(self.paused) | (u8::from(self.standalone) << 1));
        v.put_str(&self.holder);
        v.put_u64(self.epoch);
        v.put_i64(self.expires_ms);
        v.put_str(&self.position);
        v.put_str(&self.error);
        v.put_i64(self.error_ms);
        v
    }

    pub fn decode(value: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(value);
        r.version(1)?;
        let config = r.string("config")?;
        let flags = r.u8("flags")?;
        let record = ConnectorRecord {
            config,
            paused: flags & 1 != 0,
            standalone: flags & 2 != 0,
            holder: r.string("holder")?,
            epoch: r.u64("epoch")?,
            expires_ms: r.i64("expiry")?,
            position: r.string("position")?,
            error: r.string("error")?,
            error_ms: r.i64("error time")?,
        };
        r.finish()?;
        Ok(record)
    }
}

pub fn key(name: &str) -> Vec<u8> {
    let mut key = vec![keys::CONNECTOR];
    key.extend_from_slice(name.as_bytes());
    key
}

fn worker_key(worker: &str) -> Vec<u8> {
    let mut key = vec![keys::CONNECT_WORKER];
    key.extend_from_slice(worker.as_bytes());
    key
}

/// What a worker's round does to one connector's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimChange {
    /// Keep it: push its expiry out.
    Renew,
    /// Take it: a new epoch.
    Take,
    /// Give it up.
    Release,
}

/// What a worker tells at each round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRound {
    pub worker: String,
    pub now_ms: i64,
    pub ttl_ms: i64,
    /// Whether it joins the pool's live workers (a standalone worker does not).
    pub register: bool,
    /// Errors its tasks met since the last round: (connector, epoch,
    /// error); an empty error clears the last one (the task recovered).
    pub errors: Vec<(String, u64, String)>,
}

/// How a connector is changed from outside its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorAction {
    Pause,
    Resume,
    Delete,
}

fn unknown(name: &str) -> CatalogError {
    CatalogError::UnknownConnector(name.to_string())
}

impl Catalog {
    /// Creates a connector; with `replace`, updates an existing one's config
    /// (keeping its claim and progress) instead of refusing it.
    pub async fn put_connector(
        &self,
        name: &str,
        config: &str,
        standalone: bool,
        replace: bool,
    ) -> Result<(), CatalogError> {
        transact!(self, |t| {
            let old = read(t, &key(name), true, ConnectorRecord::decode).await?;
            let record = match old {
                Some(_) if !replace => return Err(CatalogError::ConnectorExists(name.to_string())),
                Some(old) => ConnectorRecord { config: config.to_string(), standalone, ..old },
                None => ConnectorRecord { config: config.to_string(), standalone, ..Default::default() },
            };
            t.put(key(name), record.encode());
            Ok(())
        })
    }

    /// Every connector, by name.
    pub async fn connectors(&self) -> Result<Vec<(String, ConnectorRecord)>, CatalogError> {
        read_only!(self, |t| connectors(t).await)
    }

    /// Pauses, resumes or deletes a connector. A paused or deleted
    /// connector's worker lets it go at its next round.
    pub async fn connector_action(&self, name: &str, action: ConnectorAction) -> Result<(), CatalogError> {
        transact!(self, |t| {
            let Some(mut record) = read(t, &key(name), true, ConnectorRecord::decode).await? else {
                return Err(unknown(name));
            };
            match action {
                ConnectorAction::Delete => t.delete(key(name)),
                ConnectorAction::Pause | ConnectorAction::Resume => {
                    record.paused = action == ConnectorAction::Pause;
                    t.put(key(name), record.encode());
                }
            }
            Ok(())
        })
    }

    /// One worker round: registers the worker until `now + ttl`, records
    /// its tasks' errors, and applies the claim changes `plan` decides from
    /// every connector and the live workers. Returns the connectors the
    /// worker holds afterwards.
    pub async fn connect_round(
        &self,
        round: &WorkerRound,
        plan: impl Fn(&[(String, ConnectorRecord)], &[String]) -> Vec<(String, ClaimChange)>,
    ) -> Result<Vec<(String, ConnectorRecord)>, CatalogError> {
        transact!(self, |t| {
            let mut all = connectors(t).await?;
            let mut live: Vec<String> = Vec::new();
            for (k, v) in scan_prefix(t, &[keys::CONNECT_WORKER]).await? {
                let expires = v
                    .as_ref()
                    .try_into()
                    .map(i64::from_be_bytes)
                    .map_err(|_| corrupt(&k, CodecError::Invalid("worker expiry")))?;
                let id = String::from_utf8_lossy(&k[1..]).into_owned();
                if expires > round.now_ms && id != round.worker {
                    live.push(id);
                } else if expires <= round.now_ms {
                    t.delete(k); // a worker gone: forget it
                }
            }
            if round.register {
                live.push(round.worker.clone());
                t.put(worker_key(&round.worker), (round.now_ms + round.ttl_ms).to_be_bytes().to_vec());
            }
            live.sort();
            let mut changed = std::collections::BTreeSet::new();
            for (name, epoch, error) in &round.errors {
                if let Some((_, r)) = all.iter_mut().find(|(n, r)| n == name && r.epoch == *epoch) {
                    // An empty error: the task recovered.
                    r.error = error.clone();
                    r.error_ms = if error.is_empty() { 0 } else { round.now_ms };
                    changed.insert(name.clone());
                }
            }
            for (name, change) in plan(&all, &live) {
                let Some((_, r)) = all.iter_mut().find(|(n, _)| *n == name) else { continue };
                match change {
                    ClaimChange::Renew => r.expires_ms = round.now_ms + round.ttl_ms,
                    ClaimChange::Take => {
                        r.holder = round.worker.clone();
                        r.epoch += 1;
                        r.expires_ms = round.now_ms + round.ttl_ms;
                        r.error.clear();
                        r.error_ms = 0;
                    }
                    ClaimChange::Release => {
                        r.holder.clear();
                        r.expires_ms = 0;
                    }
                }
                changed.insert(name);
            }
            for (name, r) in all.iter().filter(|(n, _)| changed.contains(n)) {
                t.put(key(name), r.encode());
            }
            Ok(all.into_iter().filter(|(_, r)| r.held_by(&round.worker, round.now_ms)).collect())
        })
    }

    /// Stores a source's progress, if `worker` still holds the claim at `epoch`.
    pub async fn commit_connector(
        &self,
        name: &str,
        worker: &str,
        epoch: u64,
        position: &str,
    ) -> Result<(), CatalogError> {
        transact!(self, |t| {
            let Some(mut record) = read(t, &key(name), true, ConnectorRecord::decode).await? else {
                return Err(unknown(name));
            };
            if record.holder != worker || record.epoch != epoch {
                return Err(CatalogError::ConnectorFenced {
                    name: name.to_string(),
                    holder: record.holder,
                    epoch: record.epoch,
                });
            }
            record.position = position.to_string();
            t.put(key(name), record.encode());
            Ok(())
        })
    }
}

async fn connectors(t: &mut super::Txn) -> Result<Vec<(String, ConnectorRecord)>, CatalogError> {
    scan_prefix(t, &[keys::CONNECTOR])
        .await?
        .into_iter()
        .map(|(k, v)| {
            let name = std::str::from_utf8(&k[1..]).map_err(|_| corrupt(&k, CodecError::Invalid("connector name")))?;
            Ok((name.to_string(), ConnectorRecord::decode(&v).map_err(|e| corrupt(&k, e))?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = ConnectorRecord {
            config: "type = \"file\"".into(),
            paused: true,
            standalone: true,
            holder: "w1".into(),
            epoch: 7,
            expires_ms: 123,
            position: "{\"offset\":5}".into(),
            error: "boom".into(),
            error_ms: 9,
        };
        assert_eq!(ConnectorRecord::decode(&r.encode()).unwrap(), r);
        assert!(ConnectorRecord::decode(&r.encode()[..10]).is_err());
    }
}

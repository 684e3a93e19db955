//! Where each partition's owner is, with a connection to each owner, for
//! the producer (which must write to owners) and the consumer (which reads
//! the tail from owners, where new records show up first).

use std::sync::Mutex;
use std::time::Duration;

use silt_wire::TopicDescription;
use tokio::time::Instant;

use crate::client::{Client, ClientConfig};
use crate::error::ClientError;

/// Where each partition's owner is, and a connection to each owner.
pub(crate) struct Router {
    /// Any agent: it answers where the owners are. Replaced from the
    /// configured list when it stops answering.
    bootstrap: tokio::sync::RwLock<Client>,
    topic: String,
    /// The agent list the client was given.
    seeds: String,
    owners: std::sync::RwLock<Vec<String>>,
    connections: tokio::sync::Mutex<std::collections::HashMap<String, Client>>,
    /// When the owners were last asked for.
    refreshed: Mutex<Option<Instant>>,
}

/// How often a wait on an owner checks that the partition is still there;
/// a dead agent's connection only times out after several seconds.
pub(crate) const OWNER_CHECK: Duration = Duration::from_secs(1);
/// The longest an owner lookup may take before the next agent is asked.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

impl Router {
    pub(crate) fn new(client: &Client, topic: &str, description: &TopicDescription) -> Router {
        Router {
            seeds: client.seeds().to_string(),
            bootstrap: tokio::sync::RwLock::new(client.clone()),
            topic: topic.into(),
            owners: std::sync::RwLock::new(description.partitions.iter().map(|p| p.owner.clone()).collect()),
            connections: Default::default(),
            refreshed: Mutex::new(Some(Instant::now())),
        }
    }

    /// The connection to `p`'s owner (the bootstrap agent when none is known).
    pub(crate) async fn client_for(&self, p: u32) -> Result<Client, ClientError> {
        let owner = self.owners.read().expect("owners lock").get(p as usize).cloned().unwrap_or_default();
        let bootstrap = self.bootstrap.read().await.clone();
        if owner.is_empty() || owner == bootstrap.agent() {
            return Ok(bootstrap);
        }
        let mut connections = self.connections.lock().await;
        if let Some(c) = connections.get(&owner) {
            if c.is_open() {
                return Ok(c.clone());
            }
        }
        let config = ClientConfig { agent: owner.clone(), ..bootstrap.config().clone() };
        let client = Client::connect(config).await?;
        connections.insert(owner, client.clone());
        Ok(client)
    }

    /// The owner of `p` as last looked up ("" when none or not known).
    pub(crate) fn owner(&self, p: u32) -> String {
        self.owners.read().expect("owners lock").get(p as usize).cloned().unwrap_or_default()
    }

    /// Looks the owners up again unless that was done within `age`.
    pub(crate) async fn refresh_if_older(&self, age: Duration) {
        {
            let mut at = self.refreshed.lock().expect("refresh lock");
            if at.is_some_and(|t| t.elapsed() < age) {
                return;
            }
            *at = Some(Instant::now());
        }
        self.refresh().await;
    }

    /// Asks for the partitions' owners again (after NOT_OWNER and the like).
    pub(crate) async fn refresh(&self) {
        *self.refreshed.lock().expect("refresh lock") = Some(Instant::now());
        let bootstrap = self.bootstrap.read().await.clone();
        let described = match tokio::time::timeout(LOOKUP_TIMEOUT, bootstrap.describe_topic(&self.topic)).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) if !e.is_retriable() && bootstrap.is_open() => Err(e),
            // That agent is gone (or too slow): connect through the configured
            // list again, trying it last.
            _ => {
                let gone = bootstrap.agent();
                let mut seeds: Vec<&str> = self.seeds.split(',').map(str::trim).filter(|s| *s != gone).collect();
                seeds.push(gone);
                let config = ClientConfig { agent: seeds.join(","), ..bootstrap.config().clone() };
                match Client::connect(config).await {
                    Ok(fresh) => {
                        let d = fresh.describe_topic(&self.topic).await;
                        *self.bootstrap.write().await = fresh;
                        d
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match described {
            Ok(d) => *self.owners.write().expect("owners lock") = d.partitions.into_iter().map(|p| p.owner).collect(),
            Err(e) => tracing::debug!(error = %e, "could not refresh partition owners"),
        }
    }
}

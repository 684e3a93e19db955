//! Connectors: their configs, and the rounds in which `silt connect`
//! workers claim them (decided by `core::connectors`). The agent keeps
//! configs and progress in the metadata store; the workers run them.

use silt_metadata::catalog::{ConnectorAction, ConnectorRecord, WorkerRound};
use silt_wire::{ConnectHeartbeat, ConnectorInfo, ConnectorOp};

use super::Service;
use crate::core::connectors;
use crate::error::ServiceError;

/// The longest claim a worker may ask for.
const MAX_TTL_MS: u32 = 10 * 60 * 1000;

/// Connector names follow the rules of group names (the sink's group is
/// named after its connector).
pub fn validate_connector_name(name: &str) -> Result<(), ServiceError> {
    crate::groups::validate_group_name(name).map_err(|e| match e {
        ServiceError::InvalidGroupName { reason, .. } => {
            ServiceError::InvalidConnectorName { name: name.to_string(), reason }
        }
        other => other,
    })
}

fn info(name: String, r: ConnectorRecord) -> ConnectorInfo {
    ConnectorInfo {
        name,
        config: r.config,
        paused: r.paused,
        standalone: r.standalone,
        worker: r.holder,
        epoch: r.epoch,
        expires_ms: r.expires_ms,
        position: r.position,
        error: r.error,
        error_ms: r.error_ms,
    }
}

impl Service {
    /// Creates a connector (`replace`: or updates its config). The config
    /// was checked by the client that sent it; workers check it again.
    pub async fn put_connector(
        &self,
        name: &str,
        config: &str,
        standalone: bool,
        replace: bool,
    ) -> Result<(), ServiceError> {
        validate_connector_name(name)?;
        Ok(self.catalog.put_connector(name, config, standalone, replace).await?)
    }

    pub async fn list_connectors(&self) -> Result<Vec<ConnectorInfo>, ServiceError> {
        Ok(self.catalog.connectors().await?.into_iter().map(|(n, r)| info(n, r)).collect())
    }

    pub async fn connector_action(&self, name: &str, op: ConnectorOp) -> Result<(), ServiceError> {
        let action = match op {
            ConnectorOp::Pause => ConnectorAction::Pause,
            ConnectorOp::Resume => ConnectorAction::Resume,
            ConnectorOp::Delete => ConnectorAction::Delete,
        };
        Ok(self.catalog.connector_action(name, action).await?)
    }

    /// A worker's round: what it holds afterwards.
    pub async fn connect_heartbeat(&self, h: ConnectHeartbeat) -> Result<Vec<ConnectorInfo>, ServiceError> {
        if h.worker.is_empty() || h.ttl_ms == 0 || h.ttl_ms > MAX_TTL_MS {
            return Err(ServiceError::InvalidConfig {
                key: "worker".into(),
                reason: format!("a worker needs an id and a TTL of 1 ms to {MAX_TTL_MS} ms"),
            });
        }
        let round = WorkerRound {
            worker: h.worker.clone(),
            now_ms: self.cluster.clock().now_ms(),
            ttl_ms: i64::from(h.ttl_ms),
            register: h.standalone.is_empty(),
            errors: h.errors,
        };
        let standalone = h.standalone;
        let held = self
            .catalog
            .connect_round(&round, |all, live| connectors::plan(&round.worker, round.now_ms, all, live, &standalone))
            .await?;
        Ok(held.into_iter().map(|(n, r)| info(n, r)).collect())
    }

    /// Stores a source's progress, if `worker` still holds the connector at `epoch`.
    pub async fn commit_connector(
        &self,
        name: &str,
        worker: &str,
        epoch: u64,
        position: &str,
    ) -> Result<(), ServiceError> {
        Ok(self.catalog.commit_connector(name, worker, epoch, position).await?)
    }
}

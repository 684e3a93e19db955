//! Connectors on [`Client`]: their configs (create, list, pause, resume,
//! delete) and the requests a `silt connect` worker makes (rounds that
//! claim connectors, and commits of a source's progress).

use std::time::Duration;

use silt_wire::{ConnectHeartbeat, ConnectorInfo, ConnectorOp, Request, Response};

use crate::client::{unexpected, Client};
use crate::error::ClientError;

impl Client {
    async fn done(&self, request: &Request) -> Result<(), ClientError> {
        match self.call(request, Duration::ZERO).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn connectors(&self, request: &Request) -> Result<Vec<ConnectorInfo>, ClientError> {
        match self.call(request, Duration::ZERO).await? {
            Response::Connectors(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// Creates connector `name` from its TOML `config` (refused when it
    /// exists, unless `replace`: then its config is updated and its
    /// progress kept).
    pub async fn put_connector(
        &self,
        name: &str,
        config: &str,
        standalone: bool,
        replace: bool,
    ) -> Result<(), ClientError> {
        let request = Request::PutConnector { name: name.into(), config: config.into(), standalone, replace };
        self.done(&request).await
    }

    /// Every connector, with its config, worker and progress.
    pub async fn list_connectors(&self) -> Result<Vec<ConnectorInfo>, ClientError> {
        self.connectors(&Request::ListConnectors).await
    }

    /// Pauses, resumes or deletes a connector.
    pub async fn connector_action(&self, name: &str, action: ConnectorOp) -> Result<(), ClientError> {
        self.done(&Request::ConnectorAction { name: name.into(), action }).await
    }

    /// A worker's round: the connectors it holds afterwards.
    pub async fn connect_heartbeat(&self, heartbeat: ConnectHeartbeat) -> Result<Vec<ConnectorInfo>, ClientError> {
        self.connectors(&Request::ConnectHeartbeat(heartbeat)).await
    }

    /// Stores a source connector's progress (FENCED once `worker` no
    /// longer holds it at `epoch`).
    pub async fn commit_connector(
        &self,
        name: &str,
        worker: &str,
        epoch: u64,
        position: &str,
    ) -> Result<(), ClientError> {
        let request =
            Request::CommitConnector { name: name.into(), worker: worker.into(), epoch, position: position.into() };
        self.done(&request).await
    }
}

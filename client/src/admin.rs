//! Topic administration.

use std::time::Duration;

use silt_wire::{Request, Response, TopicDescription};

use crate::client::{unexpected, Client};
use crate::error::ClientError;

impl Client {
    /// Creates a topic on the agents' default settings.
    ///
    /// Cancel safety: if dropped after sending, the topic may or may not be created.
    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<(), ClientError> {
        self.create_topic_with(name, partitions, &[]).await
    }

    /// Creates a topic with config overrides (`("retention.ms", "3600000")`
    /// and the like, with Kafka's names). An unknown key or a bad value is
    /// refused (INVALID_CONFIG, naming the key) and nothing is created.
    ///
    /// Cancel safety: if dropped after sending, the topic may or may not be created.
    pub async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        let request = Request::CreateTopic { name: name.into(), partitions, configs: configs.to_vec() };
        match self.call(&request, Duration::ZERO).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sets config overrides of a topic and removes others (which then
    /// follow the agents' defaults). All or nothing: any bad key or value
    /// is refused and nothing changes.
    ///
    /// Cancel safety: if dropped after sending, the change may or may not be made.
    pub async fn alter_topic(
        &self,
        name: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<(), ClientError> {
        let request = Request::AlterTopic { name: name.into(), set: set.to_vec(), delete: delete.to_vec() };
        match self.call(&request, Duration::ZERO).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Cancel safety: if dropped after sending, the topic may or may not be deleted.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        match self.call(&Request::DeleteTopic { name: name.into() }, Duration::ZERO).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Cancel safe.
    pub async fn list_topics(&self) -> Result<Vec<String>, ClientError> {
        match self.call(&Request::ListTopics, Duration::ZERO).await? {
            Response::Topics(names) => Ok(names),
            other => Err(unexpected(other)),
        }
    }

    /// The registered agents: id, address, partitions owned, last heartbeat. Cancel safe.
    pub async fn list_agents(&self) -> Result<Vec<silt_wire::AgentInfo>, ClientError> {
        match self.call(&Request::ListAgents, Duration::ZERO).await? {
            Response::Agents(agents) => Ok(agents),
            other => Err(unexpected(other)),
        }
    }

    /// A producer id for an idempotent producer, and its epoch. Cancel safe
    /// (an id left unused is simply never seen).
    pub async fn init_producer(&self) -> Result<(i64, i16), ClientError> {
        match self.call(&Request::InitProducer, Duration::ZERO).await? {
            Response::ProducerId { producer_id, epoch } => Ok((producer_id, epoch)),
            other => Err(unexpected(other)),
        }
    }

    /// The agent's counters, by name (see the agent's `metrics` module). Cancel safe.
    pub async fn stats(&self) -> Result<Vec<(String, u64)>, ClientError> {
        match self.call(&Request::Stats, Duration::ZERO).await? {
            Response::Stats(counters) => Ok(counters),
            other => Err(unexpected(other)),
        }
    }

    /// Cancel safe.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        match self.call(&Request::DescribeTopic { name: name.into() }, Duration::ZERO).await? {
            Response::Topic(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }
}

//! Consumer-group administration: find a group's coordinator, list and
//! describe groups, read committed offsets, reset and delete. Requests that
//! change a group go to its coordinator, found through any agent.

use std::time::Duration;

use silt_wire::{
    ErrorCode, GroupAssignment, GroupDescription, GroupHeartbeat, GroupInfo, OffsetCommit, Request, ResetTo, Response,
    TopicOffset,
};

use crate::client::{unexpected, Client, ClientConfig};
use crate::error::ClientError;

/// How many times a request is sent again after NOT_COORDINATOR (the
/// coordinator moved): about ten seconds of backing off.
const COORDINATOR_RETRIES: u32 = 20;

impl Client {
    /// The address of the agent coordinating `group`. Cancel safe.
    pub async fn find_coordinator(&self, group: &str) -> Result<String, ClientError> {
        match self.call(&Request::FindCoordinator { group: group.into() }, Duration::ZERO).await? {
            Response::Coordinator { address } => Ok(address),
            other => Err(unexpected(other)),
        }
    }

    /// A connection to `group`'s coordinator (this one when it is).
    pub(crate) async fn coordinator(&self, group: &str) -> Result<Client, ClientError> {
        let address = self.find_coordinator(group).await?;
        if address == self.agent() {
            return Ok(self.clone());
        }
        Client::connect(ClientConfig { agent: address, ..self.config().clone() }).await
    }

    /// Sends `request` to `group`'s coordinator, following it when it moves.
    pub(crate) async fn call_coordinator(&self, group: &str, request: &Request) -> Result<Response, ClientError> {
        let mut attempt = 0;
        loop {
            let result = async { self.coordinator(group).await?.call(request, Duration::ZERO).await }.await;
            match result {
                Err(e) if e.code() == Some(ErrorCode::NotCoordinator) && attempt < COORDINATOR_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
                }
                other => return other,
            }
        }
    }

    /// Every group: name, state, members, epoch. Cancel safe.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        match self.call(&Request::ListGroups, Duration::ZERO).await? {
            Response::Groups(groups) => Ok(groups),
            other => Err(unexpected(other)),
        }
    }

    /// A group's state, members, and per partition its committed offset,
    /// log end and consumer. Cancel safe.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        match self.call(&Request::DescribeGroup { group: group.into() }, Duration::ZERO).await? {
            Response::Group(g) => Ok(g),
            other => Err(unexpected(other)),
        }
    }

    /// A group's committed offsets for `topics` (every topic when empty). Cancel safe.
    pub async fn committed_offsets(&self, group: &str, topics: &[String]) -> Result<Vec<TopicOffset>, ClientError> {
        let request = Request::OffsetFetch { group: group.into(), topics: topics.to_vec() };
        match self.call(&request, Duration::ZERO).await? {
            Response::Offsets(offsets) => Ok(offsets),
            other => Err(unexpected(other)),
        }
    }

    /// Moves a group's offsets for every partition of `topic`; refused while
    /// the group has live members. Cancel safety: if dropped after sending,
    /// the offsets may or may not have moved.
    pub async fn reset_offsets(&self, group: &str, topic: &str, to: ResetTo) -> Result<(), ClientError> {
        let request = Request::ResetOffsets { group: group.into(), topic: topic.into(), to };
        match self.call_coordinator(group, &request).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a group and its committed offsets; refused while it has live
    /// members. Cancel safety: as `reset_offsets`.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        match self.call_coordinator(group, &Request::DeleteGroup { group: group.into() }).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// The group protocol itself, for tools and benchmarks that act as members
/// without reading records (a [`crate::GroupConsumer`] does all this).
impl Client {
    /// One heartbeat to this agent (which must be the group's coordinator),
    /// held by it up to `heartbeat.wait_ms` when nothing changed.
    pub async fn group_heartbeat(&self, heartbeat: GroupHeartbeat) -> Result<GroupAssignment, ClientError> {
        let limit = Duration::from_millis(heartbeat.wait_ms.into()) + self.config().request_timeout;
        match self.call_within(&Request::GroupHeartbeat(heartbeat), limit).await? {
            Response::GroupAssignment(a) => Ok(a),
            other => Err(unexpected(other)),
        }
    }

    /// Commits a member's offsets on this agent (the group's coordinator).
    pub async fn commit_offsets(&self, commit: OffsetCommit) -> Result<(), ClientError> {
        match self.call(&Request::OffsetCommit(commit), Duration::ZERO).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// A connection to `group`'s coordinator (this one when it is). Cancel safe.
    pub async fn connect_coordinator(&self, group: &str) -> Result<Client, ClientError> {
        self.coordinator(group).await
    }
}

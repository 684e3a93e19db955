//! What each QUIC request needs the connection's principal to be allowed,
//! as Kafka asks it of the matching Kafka requests. A pure mapping; the
//! checks run in `handle` before the request touches anything.
//!
//! | request | needs |
//! |---|---|
//! | Authenticate, WhoAmI | nothing |
//! | InitProducer | write on the cluster or on some topic |
//! | CreateTopic | create on the cluster, or create on the topic |
//! | AlterTopic / DeleteTopic / DescribeTopic | alter / delete / describe on the topic |
//! | ListTopics | an authenticated principal; lists the topics it may describe |
//! | Produce / Fetch | write / read on the topic |
//! | Stats, ListAgents, ListConnectors, ListTokens, ListAcls | describe on the cluster |
//! | FindCoordinator, DescribeGroup | describe on the group |
//! | GroupHeartbeat | read on the group |
//! | OffsetCommit | read on the group and on each topic |
//! | OffsetFetch | describe on the group; answers only topics it may describe |
//! | ListGroups | an authenticated principal; lists the groups it may describe |
//! | ResetOffsets | read on the group and the topic |
//! | DeleteGroup | delete on the group |
//! | connectors, tokens and ACLs: changes | alter on the cluster |

use silt_wire::auth::{Operation, ResourceType, CLUSTER};
use silt_wire::Request;

/// One thing a request needs allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need<'a> {
    pub resource: ResourceType,
    pub name: &'a str,
    pub operation: Operation,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needs<'a> {
    /// Nothing: it may come before authentication.
    Nothing,
    /// An authenticated principal (what it answers is filtered, or harmless).
    Authenticated,
    /// Write on the cluster or on some topic: a producer id.
    Producer,
    /// Every one of these.
    All(Vec<Need<'a>>),
    /// At least one of these (checked in order).
    Any(Vec<Need<'a>>),
}

fn on(resource: ResourceType, name: &str, operation: Operation) -> Need<'_> {
    Need { resource, name, operation }
}

fn one(resource: ResourceType, name: &str, operation: Operation) -> Needs<'_> {
    Needs::All(vec![on(resource, name, operation)])
}

pub fn needs(request: &Request) -> Needs<'_> {
    use Operation::*;
    use ResourceType::{Cluster, Group, Topic};
    match request {
        Request::Authenticate { .. } | Request::WhoAmI => Needs::Nothing,
        Request::ListTopics | Request::ListGroups => Needs::Authenticated,
        Request::InitProducer => Needs::Producer,
        Request::CreateTopic { name, .. } => Needs::Any(vec![on(Cluster, CLUSTER, Create), on(Topic, name, Create)]),
        Request::AlterTopic { name, .. } => one(Topic, name, Alter),
        Request::DeleteTopic { name } => one(Topic, name, Delete),
        Request::DescribeTopic { name } => one(Topic, name, Describe),
        Request::Produce { topic, .. } => one(Topic, topic, Write),
        Request::Fetch { topic, .. } => one(Topic, topic, Read),
        Request::Stats | Request::ListAgents | Request::ListConnectors | Request::ListTokens | Request::ListAcls => {
            one(Cluster, CLUSTER, Describe)
        }
        Request::FindCoordinator { group } | Request::DescribeGroup { group } => one(Group, group, Describe),
        Request::GroupHeartbeat(h) => one(Group, &h.group, Read),
        Request::OffsetCommit(c) => {
            let mut all = vec![on(Group, &c.group, Read)];
            for o in &c.offsets {
                if !all.iter().any(|n| n.resource == Topic && n.name == o.topic) {
                    all.push(on(Topic, &o.topic, Read));
                }
            }
            Needs::All(all)
        }
        Request::OffsetFetch { group, .. } => one(Group, group, Describe),
        Request::ResetOffsets { group, topic, .. } => Needs::All(vec![on(Group, group, Read), on(Topic, topic, Read)]),
        Request::DeleteGroup { group } => one(Group, group, Delete),
        Request::PutConnector { .. }
        | Request::ConnectorAction { .. }
        | Request::ConnectHeartbeat(_)
        | Request::CommitConnector { .. }
        | Request::CreateToken { .. }
        | Request::RevokeToken { .. }
        | Request::AlterAcl { .. } => one(Cluster, CLUSTER, Alter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use silt_wire::{Acks, OffsetCommit, TopicOffset};
    use Operation::*;
    use ResourceType::*;

    #[test]
    fn requests_need_what_kafka_asks() {
        let commit = Request::OffsetCommit(OffsetCommit {
            group: "g".into(),
            member_id: "m".into(),
            member_epoch: 1,
            offsets: vec![
                TopicOffset { topic: "a".into(), partition: 0, offset: 1 },
                TopicOffset { topic: "a".into(), partition: 1, offset: 1 },
                TopicOffset { topic: "b".into(), partition: 0, offset: 1 },
            ],
        });
        let produce = Request::Produce { topic: "t".into(), partition: 0, acks: Acks::Durable, batch: Bytes::new() };
        let create = Request::CreateTopic { name: "t".into(), partitions: 1, configs: vec![] };
        let cases: Vec<(Request, Needs<'static>)> = vec![
            (Request::WhoAmI, Needs::Nothing),
            (Request::ListTopics, Needs::Authenticated),
            (Request::InitProducer, Needs::Producer),
            (produce, one(Topic, "t", Write)),
            (
                Request::Fetch { topic: "t".into(), partition: 0, offset: 0, max_bytes: 1, max_wait_ms: 0 },
                one(Topic, "t", Read),
            ),
            (create, Needs::Any(vec![on(Cluster, CLUSTER, Create), on(Topic, "t", Create)])),
            (Request::DeleteTopic { name: "t".into() }, one(Topic, "t", Delete)),
            (commit, Needs::All(vec![on(Group, "g", Read), on(Topic, "a", Read), on(Topic, "b", Read)])),
            (Request::DeleteGroup { group: "g".into() }, one(Group, "g", Delete)),
            (Request::ListAcls, one(Cluster, CLUSTER, Describe)),
            (Request::RevokeToken { principal: "bob".into() }, one(Cluster, CLUSTER, Alter)),
        ];
        for (request, want) in &cases {
            assert_eq!(&needs(request), want, "{}", request.name());
        }
    }
}

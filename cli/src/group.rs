//! `silt group`: list, describe, reset offsets, delete.

use anyhow::bail;
use silt_client::{Client, ResetTo};

#[derive(clap::Subcommand)]
pub enum GroupCommand {
    /// List the consumer groups: state, members, epoch.
    List,
    /// Show a group: its state and epoch, then per partition the committed
    /// offset, the log's end, the lag and the member reading it.
    Describe { group: String },
    /// Move a group's committed offsets for every partition of a topic
    /// (refused while the group has live members).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// To each partition's first record.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To each partition's end (only new records).
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To this offset in every partition (between its first record and its end).
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
    },
    /// Delete a group and its committed offsets (refused while it has live members).
    Delete { group: String },
}

pub async fn run(client: &Client, command: &GroupCommand) -> anyhow::Result<i32> {
    match command {
        GroupCommand::List => {
            println!("{:<32}  {:<12}  {:>7}  {:>6}", "GROUP", "STATE", "MEMBERS", "EPOCH");
            for g in client.list_groups().await? {
                println!("{:<32}  {:<12}  {:>7}  {:>6}", g.name, g.state, g.members, g.epoch);
            }
        }
        GroupCommand::Describe { group } => {
            let d = client.describe_group(group).await?;
            let coordinator = if d.coordinator.is_empty() { "-" } else { &d.coordinator };
            println!(
                "group {} ({}, epoch {}, {} member(s), coordinator {coordinator})",
                d.name,
                d.state,
                d.epoch,
                d.members.len()
            );
            println!(
                "{:<24}  {:>9}  {:>14}  {:>14}  {:>10}  {:<24}  {:<16}",
                "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER", "HOST"
            );
            for p in &d.partitions {
                let (current, lag) = match p.committed {
                    n if n >= 0 => (n.to_string(), (p.log_end - n).max(0).to_string()),
                    _ => ("-".to_string(), "-".to_string()),
                };
                let member = if p.member.is_empty() { "-" } else { &p.member };
                let host = d.members.iter().find(|m| m.id == p.member).map_or("-", |m| m.host.as_str());
                println!(
                    "{:<24}  {:>9}  {:>14}  {:>14}  {:>10}  {:<24}  {:<16}",
                    p.topic, p.partition, current, p.log_end, lag, member, host
                );
            }
        }
        GroupCommand::ResetOffsets { group, topic, to_earliest, to_latest, to_offset } => {
            let to = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => ResetTo::Earliest,
                (_, true, _) => ResetTo::Latest,
                (_, _, Some(n)) => ResetTo::Offset(*n),
                _ => bail!("say where to: --to-earliest, --to-latest or --to-offset N"),
            };
            client.reset_offsets(group, topic, to).await?;
            println!("reset group {group}'s offsets for topic {topic}");
        }
        GroupCommand::Delete { group } => {
            client.delete_group(group).await?;
            println!("deleted group {group}");
        }
    }
    Ok(0)
}

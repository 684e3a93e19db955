//! `silt topic`: create, alter, list, describe and delete topics.

use silt_client::Client;

#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: u32,
        /// A config override, KEY=VALUE (repeatable): retention.ms,
        /// retention.bytes, cleanup.policy, max.message.bytes,
        /// min.compaction.lag.ms, delete.retention.ms, segment.bytes.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// Change a topic's config overrides.
    Alter {
        name: String,
        /// Set a config override, KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
        /// Remove an override, so the agents' default applies (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// List topics.
    List,
    /// Show the topic's config overrides and each partition: id, owner,
    /// epoch, log start offset, high watermark.
    Describe { name: String },
    /// Delete a topic and its records.
    Delete { name: String },
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE (for example retention.ms=3600000)")),
    }
}

pub async fn run(client: &Client, command: &TopicCommand) -> anyhow::Result<i32> {
    match command {
        TopicCommand::Create { name, partitions, configs } => {
            client.create_topic_with(name, *partitions, configs).await?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicCommand::Alter { name, configs, delete } => {
            if configs.is_empty() && delete.is_empty() {
                anyhow::bail!("nothing to change: give --config KEY=VALUE or --delete-config KEY");
            }
            client.alter_topic(name, configs, delete).await?;
            println!("altered topic {name}");
        }
        TopicCommand::List => {
            for name in client.list_topics().await? {
                println!("{name}");
            }
        }
        TopicCommand::Describe { name } => {
            let d = client.describe_topic(name).await?;
            println!("topic {} (id {}, {} partitions)", d.name, d.id, d.partitions.len());
            let configs: Vec<String> = d.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            match configs.is_empty() {
                true => println!("CONFIGS (none: the agents' defaults)"),
                false => println!("CONFIGS {}", configs.join(",")),
            }
            println!(
                "{:>9}  {:<22}  {:>5}  {:>14}  {:>14}",
                "PARTITION", "OWNER", "EPOCH", "LOG-START", "HIGH-WATERMARK"
            );
            for p in &d.partitions {
                let owner = if p.owner.is_empty() { "-" } else { &p.owner };
                println!(
                    "{:>9}  {:<22}  {:>5}  {:>14}  {:>14}",
                    p.partition, owner, p.epoch, p.log_start, p.high_watermark
                );
            }
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(name).await?;
            println!("deleted topic {name}");
        }
    }
    Ok(0)
}

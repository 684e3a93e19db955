//! `--config FILE.toml`: every flag has a key of the same name
//! (`flush-interval = "250ms"`, `cache-dir = ["/mnt/a", "/mnt/b"]`).
//!
//! Precedence: a flag, then its `SILT_*` environment variable, then the
//! file, then the default. The file's values are checked with the flags'
//! own parsers, so a bad value is refused the same way, naming the file,
//! the line and the key; so is an unknown key.
//!
//! [`resolve`] turns the parsed command line into [`Effective`] settings:
//! the flags given, plus the file's keys no flag or variable set, parsed
//! again as one command line (clap then fills in the environment and the
//! defaults), with where each value came from.

use std::collections::{BTreeMap, HashMap};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use toml::{Spanned, Value};

use super::{Args, Config};
use crate::error::AgentError;

/// Flags that are about the file itself, so not keys in it.
const NOT_KEYS: &[&str] = &["config", "print-config"];

#[derive(clap::Parser)]
#[command(name = "silt agent")]
struct AgentFlags {
    #[command(flatten)]
    args: Args,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File { line: usize },
    Default,
}

/// The settings an agent runs with, and where each came from.
pub struct Effective {
    pub args: Args,
    /// Keys from the file, with their lines.
    from_file: HashMap<String, usize>,
    file: Option<String>,
    matches: ArgMatches,
}

fn file_error(path: &str, line: usize, key: &str, reason: impl Into<String>) -> AgentError {
    let reason = reason.into();
    let reason = if key.is_empty() { reason } else { format!("{key}: {reason}") };
    AgentError::ConfigFile { path: path.to_string(), line, reason }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The closest known key, for a typo.
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known.map(|k| (silt_wire::units::edit_distance(key, k), k)).filter(|(d, _)| *d <= 3).min().map(|(_, k)| k)
}

/// A TOML value as the strings a flag would be given.
fn as_flag_values(value: &Value) -> Result<Vec<String>, String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        other => {
            Err(format!("a {} is not a setting's value (use a string, an integer or a boolean)", other.type_str()))
        }
    };
    match value {
        Value::Array(items) => items.iter().map(scalar).collect(),
        v => scalar(v).map(|s| vec![s]),
    }
}

/// Parses `value` as flag `--key` would be, alone.
fn check_value(arg: &clap::Arg, key: &str, value: &str) -> Result<(), String> {
    if !arg.get_action().takes_values() {
        return match value {
            "true" | "false" => Ok(()),
            other => Err(format!("{other:?} is not a boolean (use true or false)")),
        };
    }
    let alone = clap::Arg::new("value")
        .long(key.to_string())
        .value_name(arg.get_value_names().and_then(|n| n.first()).map(|n| n.to_string()).unwrap_or("VALUE".into()))
        .value_parser(arg.get_value_parser().clone())
        .allow_hyphen_values(true);
    clap::Command::new("silt agent")
        .no_binary_name(true)
        .arg(alone)
        .try_get_matches_from([format!("--{key}"), value.to_string()])
        .map(|_| ())
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_string())
}

/// The command line's flags, the file's keys and the environment, resolved.
/// `matches` are the agent command's (flags and environment parsed).
pub fn resolve(matches: &ArgMatches) -> Result<Effective, AgentError> {
    let cmd = AgentFlags::command();
    let mut argv: Vec<String> = vec!["silt agent".into()];
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        if arg.get_action().takes_values() {
            for raw in matches.get_raw(id).into_iter().flatten() {
                argv.push(format!("--{long}"));
                argv.push(raw.to_string_lossy().into_owned());
            }
        } else {
            argv.push(format!("--{long}"));
        }
    }
    let path = matches.get_one::<std::path::PathBuf>("config").cloned();
    let mut from_file = HashMap::new();
    if let Some(path) = &path {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::Config { key: "--config", reason: format!("cannot read {shown}: {e}") })?;
        let table: BTreeMap<String, Spanned<Value>> = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            file_error(&shown, line, "", format!("not valid TOML: {}", e.message()))
        })?;
        let mut keyed: Vec<(usize, String, Spanned<Value>)> =
            table.into_iter().map(|(k, v)| (line_of(&text, v.span().start), k, v)).collect();
        keyed.sort_by_key(|(line, _, _)| *line);
        for (line, key, value) in keyed {
            let arg =
                cmd.get_arguments().find(|a| a.get_long() == Some(key.as_str()) && !NOT_KEYS.contains(&key.as_str()));
            let Some(arg) = arg else {
                let known = cmd.get_arguments().filter_map(|a| a.get_long()).filter(|k| !NOT_KEYS.contains(k));
                let hint = closest(&key, known).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
                return Err(file_error(&shown, line, &key, format!("unknown key{hint}")));
            };
            let values = as_flag_values(value.get_ref()).map_err(|e| file_error(&shown, line, &key, e))?;
            if values.len() != 1
                && !matches!(arg.get_num_args(), Some(r) if r.max_values() > 1)
                && !matches!(arg.get_action(), clap::ArgAction::Append)
            {
                return Err(file_error(&shown, line, &key, "takes one value, not a list"));
            }
            for v in &values {
                check_value(arg, &key, v).map_err(|e| file_error(&shown, line, &key, e))?;
            }
            let id = arg.get_id().as_str();
            if matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
                continue; // a flag or a variable overrides the file
            }
            from_file.insert(key.clone(), line);
            if arg.get_action().takes_values() {
                for v in values {
                    argv.push(format!("--{key}"));
                    argv.push(v);
                }
            } else if values == ["true"] {
                argv.push(format!("--{key}"));
            }
        }
    }
    let matches = AgentFlags::command()
        .try_get_matches_from(&argv)
        .map_err(|e| AgentError::Config { key: "--config", reason: e.to_string() })?;
    let args = AgentFlags::from_arg_matches(&matches)
        .map_err(|e| AgentError::Config { key: "--config", reason: e.to_string() })?
        .args;
    Ok(Effective { args, from_file, file: path.map(|p| p.display().to_string()), matches })
}

impl Effective {
    fn source(&self, key: &str, id: &str) -> Source {
        if let Some(&line) = self.from_file.get(key) {
            return Source::File { line };
        }
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env,
            _ => Source::Default,
        }
    }

    /// Validates the settings; a refused value set in the file names its line.
    pub fn validate(&self) -> Result<Config, AgentError> {
        self.args.validate().map_err(|e| match e {
            AgentError::Config { key, reason } => {
                match (self.from_file.get(key.trim_start_matches("--")), &self.file) {
                    (Some(&line), Some(path)) => file_error(path, line, key.trim_start_matches("--"), reason),
                    _ => AgentError::Config { key, reason },
                }
            }
            other => other,
        })
    }

    /// The effective settings as a config file (itself a valid `--config`),
    /// each with its source; secrets masked.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# silt agent: the effective configuration.\n\
             # Precedence: flag, then SILT_* environment variable, then --config file, then default.\n",
        );
        let cmd = AgentFlags::command();
        for arg in cmd.get_arguments() {
            let (Some(key), id) = (arg.get_long(), arg.get_id().as_str()) else { continue };
            if NOT_KEYS.contains(&key) {
                continue;
            }
            let raw: Vec<String> =
                self.matches.get_raw(id).into_iter().flatten().map(|v| mask(key, &v.to_string_lossy())).collect();
            let source = match self.source(key, id) {
                Source::Flag => "flag".to_string(),
                Source::Env => {
                    format!("environment {}", arg.get_env().map(|e| e.to_string_lossy()).unwrap_or_default())
                }
                Source::File { line } => format!("{}:{line}", self.file.as_deref().unwrap_or("file")),
                Source::Default => "default".to_string(),
            };
            let quoted = |v: &str| Value::String(v.to_string()).to_string();
            let value = if !arg.get_action().takes_values() {
                raw.first().cloned().unwrap_or_else(|| "false".into())
            } else if matches!(arg.get_action(), clap::ArgAction::Append) {
                format!("[{}]", raw.iter().map(|v| quoted(v)).collect::<Vec<_>>().join(", "))
            } else if let Some(v) = raw.first() {
                // Whole numbers as TOML integers; the file reads either.
                let number = v.strip_prefix('-').unwrap_or(v);
                match !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) && v.parse::<i64>().is_ok() {
                    true => v.clone(),
                    false => quoted(v),
                }
            } else {
                out.push_str(&format!("# {key} = (unset)\n"));
                continue;
            };
            out.push_str(&format!("{key} = {value}  # {source}\n"));
        }
        out
    }
}

/// Hides secrets: a password in a URL, or a whole value whose key names a secret.
fn mask(key: &str, value: &str) -> String {
    if ["secret", "password", "token"].iter().any(|s| key.contains(s)) && !value.is_empty() {
        return "****".into();
    }
    if let Some((scheme, rest)) = value.split_once("://") {
        let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:****@{host}{tail}");
            }
        }
    }
    value.to_string()
}

/// Reads the agent's flags from `argv` (the words after `silt agent`), as
/// a test or an embedding program would.
pub fn resolve_from<I, S>(argv: I) -> Result<Effective, AgentError>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let mut full: Vec<std::ffi::OsString> = vec!["silt agent".into()];
    full.extend(argv.into_iter().map(Into::into));
    let matches = AgentFlags::command()
        .try_get_matches_from(full)
        .map_err(|e| AgentError::Config { key: "flags", reason: e.to_string() })?;
    resolve(&matches)
}

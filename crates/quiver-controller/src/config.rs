//! The controller's configuration file (`quiver.toml`).
//!
//! Parsed strictly: an unknown key is an error naming the key and its `line:column`, because
//! a misspelt `poll_interval` silently falling back to a default is the kind of surprise an
//! operator finds at 3 a.m. Relative paths resolve against the folder holding the config
//! file, so the same file works whatever the working directory. Secrets (webhook secrets,
//! fetch tokens) are never in this file: it names the file or environment variable that holds
//! them, and they are read once at start into [`Secret`]s that never print.
//!
//! The reference with every key and its default is `docs/configuration.md`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A TOML or value error at a position in the file.
    #[error("{path}:{line}:{column}: {message}")]
    At {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// What is wrong (names the key).
        message: String,
    },
    /// A problem that is not at one position (a missing section, conflicting keys).
    #[error("{path}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A secret named by the config could not be read.
    #[error("{key}: {message}")]
    Secret {
        /// The key naming the secret, e.g. `webhooks.github_secret_file`.
        key: String,
        /// What went wrong (never the secret itself).
        message: String,
    },
}

/// Where the library repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// A repository on this machine (bare or with a work tree), read in place.
    Local(PathBuf),
    /// A remote repository mirrored into `state_dir/mirror.git` with `git fetch`.
    Remote(String),
}

/// How the first trusted policy is established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The policy at this commit is trusted as is.
    Commit(String),
    /// Changes to policy approved by these people (emails) are trusted from the start.
    RootApprovers(Vec<String>),
}

/// Credentials for fetching a remote repository.
#[derive(Clone, PartialEq, Eq)]
pub enum FetchAuth {
    /// No credentials (public repository or `file://`).
    None,
    /// An https token (password of a basic-auth pair).
    Token(Secret),
    /// An SSH private key file.
    SshKey(PathBuf),
}

impl fmt::Debug for FetchAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchAuth::None => f.write_str("None"),
            FetchAuth::Token(_) => f.write_str("Token(<redacted>)"),
            FetchAuth::SshKey(p) => write!(f, "SshKey({})", p.display()),
        }
    }
}

/// A secret string that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself; keep the use local.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The repository settings.
#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// Where it is.
    pub location: RepoLocation,
    /// The tracked branch.
    pub branch: String,
    /// Folder of scripts inside the repository.
    pub library: String,
    /// Folder of policy files inside the repository.
    pub policies: String,
    /// Fetch credentials for a remote repository.
    pub auth: FetchAuth,
}

/// The HTTP server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted.
    pub max_body: u64,
    /// Longest a request may take (long polls add their wait on top).
    pub request_timeout: Duration,
}

/// Change detection settings.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Poll (and fetch) every this long, ±10 % jitter.
    pub poll_interval: Duration,
    /// Coalesce triggers arriving within this window.
    pub debounce: Duration,
    /// Watch a local repository's refs for changes.
    pub fs_notify: bool,
}

/// Webhook secrets, each present only when configured.
#[derive(Debug, Clone, Default)]
pub struct WebhookSecrets {
    /// GitHub's `X-Hub-Signature-256` HMAC secret.
    pub github: Option<Secret>,
    /// GitLab's `X-Gitlab-Token`.
    pub gitlab: Option<Secret>,
    /// Gitea's `X-Gitea-Signature` HMAC secret.
    pub gitea: Option<Secret>,
}

/// Timestamp signing settings.
#[derive(Debug, Clone)]
pub struct TimestampConfig {
    /// Re-sign this often.
    pub resign_interval: Duration,
    /// How long a signed timestamp stays valid.
    pub validity: Duration,
}

/// A loaded, validated configuration with absolute paths and secrets read.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file itself.
    pub file: PathBuf,
    /// The library repository.
    pub repository: RepositoryConfig,
    /// The first trusted policy.
    pub trust: Trust,
    /// The controller's minisign secret key file.
    pub secret_key: PathBuf,
    /// HTTP server.
    pub server: ServerConfig,
    /// Where snapshots are written.
    pub publish_dir: PathBuf,
    /// Where the state database, audit log and mirror live.
    pub state_dir: PathBuf,
    /// Change detection.
    pub watch: WatchConfig,
    /// Webhook secrets.
    pub webhooks: WebhookSecrets,
    /// Timestamp schedule.
    pub timestamp: TimestampConfig,
}

impl Config {
    /// The state database.
    pub fn state_db(&self) -> PathBuf {
        self.state_dir.join("state.db")
    }
    /// The audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.state_dir.join("audit.jsonl")
    }
    /// The persisted version index (rebuilt from git when missing or unusable).
    pub fn index_file(&self) -> PathBuf {
        self.state_dir.join("index.json")
    }
    /// The mirror of a remote repository.
    pub fn mirror_dir(&self) -> PathBuf {
        self.state_dir.join("mirror.git")
    }
    /// The repository the controller reads (the local path or the mirror).
    pub fn repo_path(&self) -> PathBuf {
        match &self.repository.location {
            RepoLocation::Local(p) => p.clone(),
            RepoLocation::Remote(_) => self.mirror_dir(),
        }
    }
}

// ---- raw TOML shape ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    repository: RawRepository,
    trust: RawTrust,
    signing: RawSigning,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    paths: RawPaths,
    #[serde(default)]
    watch: RawWatch,
    #[serde(default)]
    webhooks: RawWebhooks,
    #[serde(default)]
    timestamp: RawTimestamp,
    #[serde(default)]
    catalog: RawCatalog,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    path: Option<String>,
    url: Option<String>,
    #[serde(default = "default_branch")]
    branch: String,
    #[serde(default = "default_library")]
    library: String,
    #[serde(default = "default_policies")]
    policies: String,
    token_file: Option<String>,
    token_env: Option<String>,
    ssh_key_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    commit: Option<String>,
    root_approvers: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    secret_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen", deserialize_with = "de_addr")]
    listen: SocketAddr,
    #[serde(default = "default_max_body", deserialize_with = "de_size")]
    max_body: u64,
    #[serde(default = "default_request_timeout", deserialize_with = "de_duration")]
    request_timeout: Duration,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            max_body: default_max_body(),
            request_timeout: default_request_timeout(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    #[serde(default = "default_publish_dir")]
    publish_dir: String,
    #[serde(default = "default_state_dir")]
    state_dir: String,
}

impl Default for RawPaths {
    fn default() -> Self {
        RawPaths {
            publish_dir: default_publish_dir(),
            state_dir: default_state_dir(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    #[serde(default = "default_poll", deserialize_with = "de_duration")]
    poll_interval: Duration,
    #[serde(default = "default_debounce", deserialize_with = "de_duration")]
    debounce: Duration,
    #[serde(default = "default_true")]
    fs_notify: bool,
}

impl Default for RawWatch {
    fn default() -> Self {
        RawWatch {
            poll_interval: default_poll(),
            debounce: default_debounce(),
            fs_notify: true,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    github_secret_file: Option<String>,
    github_secret_env: Option<String>,
    gitlab_token_file: Option<String>,
    gitlab_token_env: Option<String>,
    gitea_secret_file: Option<String>,
    gitea_secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimestamp {
    #[serde(default = "default_resign", deserialize_with = "de_duration")]
    resign_interval: Duration,
    #[serde(default = "default_validity", deserialize_with = "de_duration")]
    validity: Duration,
}

impl Default for RawTimestamp {
    fn default() -> Self {
        RawTimestamp {
            resign_interval: default_resign(),
            validity: default_validity(),
        }
    }
}

/// Reserved: the catalog has no settings, because it is a pure function of the approved
/// state (every replica must publish the same bytes).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCatalog {}

fn default_branch() -> String {
    "main".into()
}
fn default_library() -> String {
    "library".into()
}
fn default_policies() -> String {
    "policies".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> u64 {
    1024 * 1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_publish_dir() -> String {
    "publish".into()
}
fn default_state_dir() -> String {
    "state".into()
}
fn default_poll() -> Duration {
    Duration::from_secs(60)
}
fn default_debounce() -> Duration {
    Duration::from_millis(250)
}
fn default_true() -> bool {
    true
}
fn default_resign() -> Duration {
    Duration::from_secs(3600)
}
fn default_validity() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration ({e}); write e.g. \"250ms\", \"60s\" or \"1h\""
        ))
    })
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(s) => s
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a size ({e}); write e.g. \"1 MiB\" or a number of bytes"
                ))
            }),
    }
}

fn de_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not an address ({e}); write e.g. \"127.0.0.1:8080\" or \"[::]:8080\""
        ))
    })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[start..]).chars().count() as u32 + 1;
    (line, column)
}

/// The line and column of `key = ` in the file (for errors found after parsing).
fn locate_key(text: &str, key: &str) -> Option<(u32, u32)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(line_col(text, offset + (line.len() - trimmed.len())));
        }
        offset += line.len();
    }
    None
}

impl Config {
    /// Reads, parses and validates a config file, and reads the secrets it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Parses config text as if read from `path`; `env` looks up environment variables.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::At {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        let _ = raw.catalog;
        let at = |key: &str, message: String| match locate_key(text, key) {
            Some((line, column)) => ConfigError::At {
                path: path.to_owned(),
                line,
                column,
                message,
            },
            None => ConfigError::Invalid {
                path: path.to_owned(),
                message,
            },
        };
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::path::absolute(&base).unwrap_or(base);
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        let r = raw.repository;
        let location = match (r.path, r.url) {
            (Some(p), None) => RepoLocation::Local(resolve(&p)),
            (None, Some(u)) => RepoLocation::Remote(u),
            (Some(_), Some(_)) => {
                return Err(at(
                    "url",
                    "repository: set either `path` or `url`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: "[repository] needs `path` (a local repository) or `url` (to mirror)"
                        .into(),
                });
            }
        };
        if r.branch.trim().is_empty() || r.branch.contains(char::is_whitespace) {
            return Err(at(
                "branch",
                format!("repository.branch `{}` is not a branch name", r.branch),
            ));
        }
        let auth = match (r.token_file, r.token_env, r.ssh_key_file) {
            (None, None, None) => FetchAuth::None,
            (file, env_name, None) if file.is_some() != env_name.is_some() => {
                let key = if file.is_some() {
                    "repository.token_file"
                } else {
                    "repository.token_env"
                };
                FetchAuth::Token(read_secret(
                    key,
                    file.as_deref().map(resolve),
                    env_name,
                    env,
                )?)
            }
            (None, None, Some(k)) => FetchAuth::SshKey(resolve(&k)),
            _ => {
                return Err(at(
                    "ssh_key_file",
                    "repository: use one of `token_file`, `token_env` or `ssh_key_file`".into(),
                ));
            }
        };
        if matches!(location, RepoLocation::Local(_)) && auth != FetchAuth::None {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message:
                    "repository: credentials only apply to `url`; a local `path` is read in place"
                        .into(),
            });
        }

        let trust = match (raw.trust.commit, raw.trust.root_approvers) {
            (Some(c), None) => {
                if c.len() < 7 || !c.chars().all(|ch| ch.is_ascii_hexdigit()) {
                    return Err(at(
                        "commit",
                        format!("trust.commit `{c}` is not a commit id (hex, at least 7 digits)"),
                    ));
                }
                Trust::Commit(c.to_ascii_lowercase())
            }
            (None, Some(a)) if !a.is_empty() => Trust::RootApprovers(a),
            (None, Some(_)) => {
                return Err(at(
                    "root_approvers",
                    "trust.root_approvers is empty; name at least one email".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(at(
                    "root_approvers",
                    "[trust]: set either `commit` or `root_approvers`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: "[trust] needs `commit` (a pinned policy commit) or `root_approvers` (emails)"
                        .into(),
                });
            }
        };

        if raw.watch.poll_interval < Duration::from_secs(1) {
            return Err(at(
                "poll_interval",
                "watch.poll_interval must be at least 1s".into(),
            ));
        }
        if raw.timestamp.resign_interval.is_zero()
            || raw.timestamp.resign_interval >= raw.timestamp.validity
        {
            return Err(at(
                "resign_interval",
                "timestamp.resign_interval must be more than 0 and less than timestamp.validity"
                    .into(),
            ));
        }
        if raw.server.request_timeout.is_zero() {
            return Err(at(
                "request_timeout",
                "server.request_timeout must be more than 0".into(),
            ));
        }

        let w = raw.webhooks;
        let pick = |file: Option<String>,
                    env_name: Option<String>,
                    key: &str|
         -> Result<Option<Secret>, ConfigError> {
            match (file, env_name) {
                (None, None) => Ok(None),
                (Some(_), Some(_)) => Err(at(
                    &format!("{key}_env"),
                    format!("webhooks: set `{key}_file` or `{key}_env`, not both"),
                )),
                (f, e) => {
                    let which = if f.is_some() { "file" } else { "env" };
                    read_secret(
                        &format!("webhooks.{key}_{which}"),
                        f.as_deref().map(resolve),
                        e,
                        env,
                    )
                    .map(Some)
                }
            }
        };
        let webhooks = WebhookSecrets {
            github: pick(w.github_secret_file, w.github_secret_env, "github_secret")?,
            gitlab: pick(w.gitlab_token_file, w.gitlab_token_env, "gitlab_token")?,
            gitea: pick(w.gitea_secret_file, w.gitea_secret_env, "gitea_secret")?,
        };

        Ok(Config {
            file: path.to_owned(),
            repository: RepositoryConfig {
                location,
                branch: r.branch,
                library: r.library.trim_matches('/').to_string(),
                policies: r.policies.trim_matches('/').to_string(),
                auth,
            },
            trust,
            secret_key: resolve(&raw.signing.secret_key),
            server: ServerConfig {
                listen: raw.server.listen,
                max_body: raw.server.max_body,
                request_timeout: raw.server.request_timeout,
            },
            publish_dir: resolve(&raw.paths.publish_dir),
            state_dir: resolve(&raw.paths.state_dir),
            watch: WatchConfig {
                poll_interval: raw.watch.poll_interval,
                debounce: raw.watch.debounce,
                fs_notify: raw.watch.fs_notify,
            },
            webhooks,
            timestamp: TimestampConfig {
                resign_interval: raw.timestamp.resign_interval,
                validity: raw.timestamp.validity,
            },
        })
    }
}

/// Reads a secret from a file (trailing newline trimmed) or an environment variable.
fn read_secret(
    key: &str,
    file: Option<PathBuf>,
    env_name: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let err = |message: String| ConfigError::Secret {
        key: key.to_string(),
        message,
    };
    let value = match (file, env_name) {
        (Some(f), _) => std::fs::read_to_string(&f)
            .map_err(|e| err(format!("cannot read {}: {e}", f.display())))?,
        (None, Some(name)) => {
            env(&name).ok_or_else(|| err(format!("environment variable {name} is not set")))?
        }
        (None, None) => return Err(err("no source given".into())),
    };
    let value = value.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err(err("the secret is empty".into()));
    }
    Ok(Secret(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/quiver/quiver.toml"), text, &|name| {
            (name == "GH").then(|| "s3cret\n".to_string())
        })
    }

    const MIN: &str = "[repository]\npath = \"repo\"\n[trust]\ncommit = \"abcdef1\"\n[signing]\nsecret_key = \"k/quiver.key\"\n";

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse(MIN).expect("valid");
        assert_eq!(
            c.repository.location,
            RepoLocation::Local("/etc/quiver/repo".into())
        );
        assert_eq!(c.repository.branch, "main");
        assert_eq!(c.repository.library, "library");
        assert_eq!(c.secret_key, PathBuf::from("/etc/quiver/k/quiver.key"));
        assert_eq!(c.state_dir, PathBuf::from("/etc/quiver/state"));
        assert_eq!(c.publish_dir, PathBuf::from("/etc/quiver/publish"));
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.max_body, 1 << 20);
        assert_eq!(c.watch.poll_interval, Duration::from_secs(60));
        assert_eq!(c.watch.debounce, Duration::from_millis(250));
        assert!(c.watch.fs_notify);
        assert_eq!(c.timestamp.validity, Duration::from_secs(86400));
        assert!(c.webhooks.github.is_none());
    }

    #[test]
    fn unknown_key_names_key_and_position() {
        let text = MIN.replace("[signing]", "[watch]\npoll_intervall = \"5s\"\n[signing]");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.starts_with("/etc/quiver/quiver.toml:6:1:"), "{msg}");
        assert!(msg.contains("poll_intervall"), "{msg}");
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let text = format!("{MIN}[server]\nmax_body = \"lots\"\n");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.starts_with("/etc/quiver/quiver.toml:8:"), "{msg}");
        assert!(msg.contains("not a size"), "{msg}");
        let text = format!("{MIN}[timestamp]\nresign_interval = \"2d\"\n");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains(":8:1: timestamp.resign_interval"), "{msg}");
    }

    #[test]
    fn secrets_from_env_never_print() {
        let text = format!("{MIN}[webhooks]\ngithub_secret_env = \"GH\"\n");
        let c = parse(&text).expect("valid");
        assert_eq!(
            c.webhooks.github.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let text = format!("{MIN}[webhooks]\ngitlab_token_env = \"NOPE\"\n");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.contains("webhooks.gitlab_token_env"), "{msg}");
    }

    #[test]
    fn trust_and_repository_are_required_and_exclusive() {
        let text = MIN.replace("commit = \"abcdef1\"", "");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("[trust] needs")
        );
        let text = MIN.replace("path = \"repo\"", "path = \"r\"\nurl = \"https://x/y.git\"");
        assert!(parse(&text).unwrap_err().to_string().contains(":3:1:"));
    }
}

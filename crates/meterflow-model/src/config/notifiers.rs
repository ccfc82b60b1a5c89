//! `[[notifier]]`: where alert notifications go.

use std::path::PathBuf;

use super::*;
use serde::Deserialize;

/// How a notifier delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// Generic JSON webhook, HMAC-SHA256 signature header when `secret_env` is set.
    Webhook,
    /// WeCom (企业微信) group robot.
    Wecom,
    /// DingTalk (钉钉) robot, signed when `secret_env` is set.
    Dingtalk,
    /// Feishu / Lark (飞书) robot, signed when `secret_env` is set.
    Feishu,
    /// An MQTT topic on a `[[mqtt]]` broker or the embedded one.
    Mqtt,
    /// The process log.
    Log,
}

/// `[[notifier]]`: where alert notifications go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// Unique notifier id.
    pub id: String,
    /// Delivery kind.
    pub kind: NotifierKind,
    /// URL (webhook and robots); robot URLs carry a key, so prefer `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Environment variable holding the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the signing secret (relative to the site file), instead of `secret_env`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// MQTT: topic (default `meterflow/alerts`).
    #[serde(default)]
    pub topic: Option<String>,
    /// MQTT: `[[mqtt]]` broker id, or `embedded` for `[broker]`.
    #[serde(default)]
    pub broker: Option<String>,
    /// Only alerts of at least this severity.
    #[serde(default = "default_min_severity")]
    pub min_severity: AlertSeverity,
    /// Request timeout, s.
    #[serde(default = "default_notify_timeout")]
    pub timeout_s: f64,
}

const fn default_min_severity() -> AlertSeverity {
    AlertSeverity::Info
}
const fn default_notify_timeout() -> f64 {
    10.0
}

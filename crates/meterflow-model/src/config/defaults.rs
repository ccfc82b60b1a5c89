//! What applies when the site file says nothing: the default alert rules
//! and the shipped register maps.

use super::*;
use std::path::Path;

/// The rules used when a site file has no `[[alert]]`.
pub fn default_alert_rules() -> Vec<AlertRule> {
    let rule = |id: &str, kind: AlertKind, severity: AlertSeverity, for_s: u64| AlertRule {
        id: id.to_string(),
        kind,
        severity,
        for_s,
        hysteresis: 0.05,
        threshold: None,
        level: None,
        targets: Vec::new(),
        work_hours: None,
        workdays: None,
        holidays: Vec::new(),
        night: None,
        nights: None,
        window_s: None,
    };
    vec![
        rule(
            "quota-projection",
            AlertKind::QuotaProjection,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "quota-overrun",
            AlertKind::QuotaOverrun,
            AlertSeverity::Critical,
            0,
        ),
        rule(
            "off-hours-baseload",
            AlertKind::OffHoursBaseload,
            AlertSeverity::Warning,
            2 * 3600,
        ),
        rule(
            "night-flow",
            AlertKind::NightFlow,
            AlertSeverity::Critical,
            0,
        ),
        rule(
            "sub-meter-imbalance",
            AlertKind::Imbalance,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "meter-silent",
            AlertKind::MeterSilent,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "counter-reset",
            AlertKind::CounterReset,
            AlertSeverity::Info,
            0,
        ),
        rule(
            "implausible-delta",
            AlertKind::ImplausibleDelta,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "bus-error-rate",
            AlertKind::BusErrorRate,
            AlertSeverity::Warning,
            600,
        ),
        rule(
            "battery-low",
            AlertKind::BatteryLow,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "valve-fault",
            AlertKind::ValveFault,
            AlertSeverity::Critical,
            0,
        ),
        rule(
            "backup-stale",
            AlertKind::BackupStale,
            AlertSeverity::Warning,
            0,
        ),
    ]
}

/// The shipped Modbus profiles.
pub fn shipped_profiles_public() -> Vec<crate::profile::Profile> {
    shipped_profiles()
}

/// The shipped profiles; their validity is a unit test, so a failure is a build defect.
pub(crate) fn shipped_profiles() -> Vec<crate::profile::Profile> {
    crate::profile::SHIPPED
        .iter()
        .map(|(name, src)| match parse_profile(src, Path::new(name)) {
            Ok(p) => p,
            // Compiled-in data, covered by `shipped_profiles_are_valid`.
            Err(e) => panic!("shipped profile {name} is invalid: {e}"),
        })
        .collect()
}

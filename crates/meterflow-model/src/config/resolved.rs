//! The validated site: what `Site::load` and `Site::parse` return, and
//! the lookups every consumer uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::factors::FactorRegistry;

use super::*;

/// A validated site.
#[derive(Debug, Clone)]
pub struct Site {
    /// The file this site was loaded from.
    pub path: PathBuf,
    /// `[site]`.
    pub site: SiteSection,
    /// The parsed IANA time zone of `site.timezone`.
    pub tz: chrono_tz::Tz,
    /// This instance's shard (`[site] shard` or `--shard`); 0/1 = the whole site.
    pub shard: crate::shard::Shard,
    /// `[store]`.
    pub store: StoreSection,
    /// `[[building]]`.
    pub buildings: Vec<Building>,
    /// `[[zone]]`.
    pub zones: Vec<Zone>,
    /// `[[agency]]`.
    pub agencies: Vec<Agency>,
    /// `[[headcount]]`, sorted by agency then date.
    pub headcounts: Vec<Headcount>,
    /// `[[space]]`.
    pub spaces: Vec<Space>,
    /// `[[meter]]`.
    pub meters: Vec<Meter>,
    /// `[[replacement]]`, resolved to UTC, sorted by meter then time.
    pub replacements: Vec<ReplacementEvent>,
    /// Shipped factor registry with the site's overrides applied.
    pub factors: FactorRegistry,
    /// `[[bus]]`.
    pub buses: Vec<Bus>,
    /// `[[mqtt]]` brokers to subscribe to.
    pub mqtt: Vec<MqttBroker>,
    /// `[broker]`: the embedded MQTT broker, if configured.
    pub broker: Option<EmbeddedBroker>,
    /// `[http]`: push ingest, if configured.
    pub http: Option<HttpIngest>,
    /// `[alerting]` settings.
    pub alerting: Alerting,
    /// `[[alert]]` rules; the shipped default set when the file has none.
    pub alert_rules: Vec<AlertRule>,
    /// `[[notifier]]`s.
    pub notifiers: Vec<NotifierConfig>,
    /// `[influx]`: the InfluxDB sink, if configured.
    pub influx: Option<InfluxSink>,
    /// `[[dlt645_item]]`: site DL/T 645 identifiers (added to, or replacing, the shipped ones).
    pub dlt645_items: Vec<Dlt645Item>,
    /// `[[cjt188_layout]]`: site CJ/T 188 model layouts (beside the shipped `standard` and `collector`).
    pub cjt188_layouts: Vec<Cjt188Layout>,
    /// `[[tariff]]`: prices in force by carrier and date.
    pub tariffs: Vec<super::tariffs::Tariff>,
    /// `[[budget]]`: agencies' energy budgets by year.
    pub budgets: Vec<super::tariffs::Budget>,
    /// `[api]`: the read API and overview page, if configured.
    pub api: Option<ApiConfig>,
    /// `[waste]`: waste-ledger settings (defaults when absent).
    pub waste: WasteSettings,
    /// `[office]`: office-space ledger settings (defaults when absent).
    pub office: OfficeSettings,
    /// `[fleet]`: vehicle-ledger settings (defaults when absent).
    pub fleet: FleetSettings,
    /// `[backup]`: scheduled backups, if configured.
    pub backup: Option<BackupSection>,
    /// Shipped Modbus profiles and the site's `[[profile]]`s (a site profile replaces a shipped one of the same name).
    pub profiles: Vec<crate::profile::Profile>,
    pub(crate) meter_index: BTreeMap<String, usize>,
}

impl Site {
    /// Is local date `d` worked at this site: the national working
    /// calendar (weekends, statutory holidays, make-up working days) less
    /// the site's `closures`.
    pub fn worked(&self, d: chrono::NaiveDate) -> bool {
        !self
            .site
            .closures
            .iter()
            .any(|c| crate::factors::to_date(c) == Some(d))
            && crate::calendar::Calendar::shipped().kind(d).worked()
    }

    /// A Modbus profile by name.
    pub fn profile(&self, name: &str) -> Option<&crate::profile::Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// A bus by id.
    pub fn bus(&self, id: &str) -> Option<&Bus> {
        self.buses.iter().find(|b| b.id == id)
    }

    /// A meter by id.
    pub fn meter(&self, id: &str) -> Option<&Meter> {
        self.meter_index.get(id).map(|&i| &self.meters[i])
    }

    /// The frame layout a CJ/T 188 meter speaks: its named layout (a site
    /// `[[cjt188_layout]]` before a shipped one), with the meter's own `di`
    /// order over the layout's.
    pub fn cjt188_layout(&self, c: &Cjt188Source) -> meterflow_cnproto::cjt188::Layout {
        let mut l = self
            .cjt188_layouts
            .iter()
            .find(|l| l.name == c.layout)
            .cloned()
            .or_else(|| {
                super::cn::shipped_cjt188_layouts()
                    .into_iter()
                    .find(|l| l.name == c.layout)
            })
            .map(|l| l.to_layout())
            .unwrap_or_default();
        if let Some(di) = c.di.as_deref().and_then(super::cn::di_bytes) {
            l.di = di;
        }
        l
    }

    /// A path of the site file (secret files, CA files) resolved against its directory.
    pub fn relative(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or_else(|| Path::new(".")).join(p)
        }
    }

    /// The earliest plausible time of a reading of `meter`, ms: the start
    /// (local midnight) of the later of `[store] earliest` (default
    /// 2000-01-01) and the meter's `in_service` date.
    pub fn earliest_ms(&self, meter: &Meter) -> i64 {
        let own = meter.in_service.as_ref().and_then(crate::factors::to_date);
        let date = match own {
            Some(d) => d.max(self.earliest_date()),
            None => self.earliest_date(),
        };
        self.midnight_ms(date)
    }

    /// The site's earliest plausible time, ms: local midnight of
    /// `[store] earliest` (default 2000-01-01). Ledger entries are checked
    /// against it.
    pub fn site_earliest_ms(&self) -> i64 {
        self.midnight_ms(self.earliest_date())
    }

    fn earliest_date(&self) -> chrono::NaiveDate {
        let (y, m, d) = DEFAULT_EARLIEST;
        self.store
            .earliest
            .as_ref()
            .and_then(crate::factors::to_date)
            .or_else(|| chrono::NaiveDate::from_ymd_opt(y, m, d))
            .unwrap_or_default()
    }

    /// The first instant of `date` in the site's zone, ms.
    fn midnight_ms(&self, date: chrono::NaiveDate) -> i64 {
        use chrono::TimeZone as _;
        date.and_hms_opt(0, 0, 0)
            .and_then(|t| self.tz.from_local_datetime(&t).earliest())
            .map_or(946_684_800_000, |t| t.timestamp_millis())
    }

    /// Where the embedded store lives (relative paths are relative to the config file).
    pub fn store_path(&self) -> PathBuf {
        if self.store.path.is_absolute() {
            self.store.path.clone()
        } else {
            let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
            dir.join(&self.store.path)
        }
    }

    /// The directory of scheduled backups, if `[backup]` is configured
    /// (relative paths are relative to the config file).
    pub fn backup_dir(&self) -> Option<PathBuf> {
        let b = self.backup.as_ref()?;
        Some(if b.dir.is_absolute() {
            b.dir.clone()
        } else {
            self.path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(&b.dir)
        })
    }

    /// Replacement events of one meter, in time order.
    pub fn replacements_of<'a>(
        &'a self,
        meter: &'a str,
    ) -> impl Iterator<Item = &'a ReplacementEvent> + 'a {
        self.replacements.iter().filter(move |r| r.meter == meter)
    }
}

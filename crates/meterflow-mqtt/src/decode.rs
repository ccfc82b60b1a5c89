//! Topics and payloads to readings (pure).

use std::borrow::Cow;
use std::collections::HashMap;

use meterflow_model::TimeSource;
use meterflow_model::config::{MqttTopic, PayloadFormat, TimestampUnit};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A value decoded from a message (meter and quantity not yet checked against the site).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Meter id.
    pub meter: String,
    /// Quantity; `None` = the meter's counter quantity.
    pub quantity: Option<String>,
    /// Time, ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
    /// Where the time came from.
    pub time_source: TimeSource,
}

/// Why a message produced no reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Stable reason: malformed, missing_field, non_numeric_value, bad_timestamp, unknown_meter, too_large, no_mapping.
    pub reason: &'static str,
    /// Details.
    pub detail: String,
}

fn err(reason: &'static str, detail: impl Into<String>) -> DecodeError {
    DecodeError {
        reason,
        detail: detail.into(),
    }
}

/// A compiled topic pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    segs: Vec<Seg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    Var(String),
    Plus,
    Hash,
}

impl Pattern {
    /// Compile `meters/{building}/{meter_id}/energy` (validated by the config already).
    pub fn new(p: &str) -> Pattern {
        let segs = p
            .split('/')
            .map(|s| match s {
                "+" => Seg::Plus,
                "#" => Seg::Hash,
                s if s.starts_with('{') && s.ends_with('}') && s.len() > 2 => {
                    Seg::Var(s[1..s.len() - 1].to_string())
                }
                s => Seg::Lit(s.to_string()),
            })
            .collect();
        Pattern { segs }
    }

    /// The MQTT subscription filter (`{name}` → `+`).
    pub fn filter(&self) -> String {
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Lit(l) => l.as_str(),
                Seg::Var(_) | Seg::Plus => "+",
                Seg::Hash => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Named segments of a matching topic.
    pub fn matches(&self, topic: &str) -> Option<HashMap<String, String>> {
        let mut vars = HashMap::new();
        self.walk(topic, |name, part| {
            vars.insert(name.to_string(), part.to_string());
        })
        .then_some(vars)
    }

    /// Whether `topic` matches; `var` sees each named segment. Allocates nothing
    /// (the per-message path).
    fn walk<'t>(&self, topic: &'t str, mut var: impl FnMut(&str, &'t str)) -> bool {
        let mut parts = topic.split('/');
        for seg in &self.segs {
            if *seg == Seg::Hash {
                return true;
            }
            let Some(part) = parts.next() else {
                return false;
            };
            match seg {
                Seg::Lit(l) if l != part => return false,
                Seg::Var(name) => var(name, part),
                _ => {}
            }
        }
        parts.next().is_none()
    }
}

/// A dotted JSON path (`a.b.0.c`, an optional leading `$.`), split once.
#[derive(Debug, Clone)]
struct JsonPath {
    text: String,
    steps: Vec<(String, Option<usize>)>,
}

impl JsonPath {
    fn new(p: &str) -> JsonPath {
        let steps = p
            .strip_prefix("$.")
            .unwrap_or(p)
            .split('.')
            .filter(|s| !s.is_empty())
            .map(|s| (s.to_string(), s.parse::<usize>().ok()))
            .collect();
        JsonPath {
            text: p.to_string(),
            steps,
        }
    }

    fn get<'v, 'a>(&self, v: &'v Json<'a>) -> Option<&'v Json<'a>> {
        self.steps
            .iter()
            .try_fold(v, |cur, (key, index)| match cur {
                Json::Obj(_) => cur.get(key),
                Json::Arr(a) => index.and_then(|i| a.get(i)),
                _ => None,
            })
    }
}

/// A topic mapping with its compiled pattern and JSON paths.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The mapping.
    pub topic: MqttTopic,
    /// Its pattern.
    pub pattern: Pattern,
    value: Option<JsonPath>,
    timestamp: Option<JsonPath>,
    items: Option<JsonPath>,
    meter_field: Option<JsonPath>,
    quantity_field: Option<JsonPath>,
}

impl Rule {
    /// Compile a mapping.
    pub fn new(topic: MqttTopic) -> Rule {
        let path = |p: &Option<String>| p.as_deref().map(JsonPath::new);
        Rule {
            pattern: Pattern::new(&topic.pattern),
            value: path(&topic.value),
            timestamp: path(&topic.timestamp),
            items: path(&topic.items),
            meter_field: path(&topic.meter_field),
            quantity_field: path(&topic.quantity_field),
            topic,
        }
    }
}

/// A JSON value that borrows its strings from the payload where it can, with
/// objects as key lists rather than maps: a meter's message has a handful of
/// keys, so decoding one costs an allocation or two instead of a map node and
/// a `String` per key (measured in `docs/performance.md`, MQTT notes).
#[derive(Debug, Clone, PartialEq)]
enum Json<'a> {
    Null,
    Bool(bool),
    U(u64),
    I(i64),
    F(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    fn parse(text: &'a str) -> Result<Json<'a>, DecodeError> {
        serde_json::from_str(text).map_err(|e| err("malformed", format!("not JSON: {e}")))
    }

    /// A member of an object; with repeated keys the last wins, as in most JSON readers.
    fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Obj(kv) => kv.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Json::U(u) => Some(u as f64),
            Json::I(i) => Some(i as f64),
            Json::F(f) => Some(f),
            _ => None,
        }
    }

    /// Numbers as their text (a meter id sent as a number).
    fn number_text(&self) -> Option<String> {
        match *self {
            Json::U(u) => Some(u.to_string()),
            Json::I(i) => Some(i.to_string()),
            Json::F(f) => Some(f.to_string()),
            _ => None,
        }
    }

    /// A short description for error messages.
    fn describe(&self) -> String {
        match self {
            Json::Null => "null".into(),
            Json::Bool(b) => b.to_string(),
            Json::Str(s) => format!("\"{}\"", clip(s)),
            Json::Arr(_) => "an array".into(),
            Json::Obj(_) => "an object".into(),
            n => n.number_text().unwrap_or_default(),
        }
    }

    /// The scalar part of a `serde_json::Value` (containers stay empty): for
    /// callers that already hold a value tree.
    fn shallow(v: &'a Value) -> Json<'a> {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Json::U(u),
                (None, Some(i)) => Json::I(i),
                _ => Json::F(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Json::Str(Cow::Borrowed(s)),
            Value::Array(_) => Json::Arr(Vec::new()),
            Value::Object(_) => Json::Obj(Vec::new()),
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Json<'de>, E> {
        Ok(Json::U(u))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Json<'de>, E> {
        Ok(Json::I(i))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Json<'de>, E> {
        Ok(Json::F(f))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        while let Some(x) = seq.next_element()? {
            out.push(x);
        }
        Ok(Json::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(Key(k)) = map.next_key()? {
            out.push((k, map.next_value()?));
        }
        Ok(Json::Obj(out))
    }
}

/// An object key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Decode a message on `topic` with the first matching rule.
pub fn decode(
    rules: &[Rule],
    topic: &str,
    payload: &[u8],
    recv_ms: i64,
) -> Result<Vec<Decoded>, DecodeError> {
    let mut from_topic = None;
    let Some(rule) = rules.iter().find(|r| {
        from_topic = None;
        r.pattern.walk(topic, |name, part| {
            if name == "meter_id" {
                from_topic = Some(part);
            }
        })
    }) else {
        return Err(err(
            "no_mapping",
            format!("no [[mqtt.topic]] pattern matches `{topic}`"),
        ));
    };
    let text = std::str::from_utf8(payload)
        .map_err(|e| err("malformed", format!("payload is not UTF-8: {e}")))?;
    let t = &rule.topic;
    let topic_meter = from_topic.or(t.meter.as_deref());
    match t.format {
        PayloadFormat::Number => {
            let meter = topic_meter.ok_or_else(|| err("malformed", "no meter for this topic"))?;
            let value: f64 = text.trim().parse().map_err(|_| {
                err(
                    "non_numeric_value",
                    format!("`{}` is not a number", clip(text)),
                )
            })?;
            Ok(vec![Decoded {
                meter: meter.to_string(),
                quantity: t.quantity.clone(),
                ts_ms: recv_ms,
                value,
                time_source: TimeSource::Receive,
            }])
        }
        PayloadFormat::LineProtocol => {
            let mut out = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            {
                for r in meterflow_import::parse_line(
                    line,
                    i as u64 + 1,
                    meterflow_import::Precision::Ns,
                ) {
                    let r = r.map_err(|e| err(reason_of(e.reason), e.detail))?;
                    out.push(Decoded {
                        meter: r.meter,
                        quantity: r.quantity,
                        ts_ms: r.ts_ms,
                        value: r.value,
                        time_source: TimeSource::Device,
                    });
                }
            }
            Ok(out)
        }
        PayloadFormat::Json => {
            let v = Json::parse(text)?;
            match &rule.items {
                Some(items) => {
                    let Some(Json::Arr(arr)) = items.get(&v) else {
                        return Err(err(
                            "missing_field",
                            format!("no array at `{}`", items.text),
                        ));
                    };
                    let top_ts = rule.timestamp.as_ref().and_then(|p| p.get(&v));
                    let mut out = Vec::new();
                    for item in arr {
                        out.extend(one_object(rule, item, topic_meter, top_ts, recv_ms)?);
                    }
                    Ok(out)
                }
                None => one_object(rule, &v, topic_meter, None, recv_ms),
            }
        }
        PayloadFormat::Sparkplug => {
            let v = Json::parse(text)?;
            let meter = topic_meter.ok_or_else(|| err("malformed", "no meter for this topic"))?;
            let Some(Json::Arr(metrics)) = v.get("metrics") else {
                return Err(err("missing_field", "no `metrics` array"));
            };
            let msg_ts = v.get("timestamp");
            let mut out = Vec::with_capacity(metrics.len());
            for m in metrics {
                let name = m
                    .get("name")
                    .and_then(Json::as_str)
                    .ok_or_else(|| err("missing_field", "a metric has no `name`"))?;
                let value = number(m.get("value"), name)?;
                let (ts_ms, time_source) =
                    time_from(m.get("timestamp").or(msg_ts), TimestampUnit::Ms, recv_ms)?;
                out.push(Decoded {
                    meter: meter.to_string(),
                    quantity: Some(name.to_string()),
                    ts_ms,
                    value,
                    time_source,
                });
            }
            Ok(out)
        }
    }
}

fn one_object(
    rule: &Rule,
    obj: &Json<'_>,
    topic_meter: Option<&str>,
    fallback_ts: Option<&Json<'_>>,
    recv_ms: i64,
) -> Result<Vec<Decoded>, DecodeError> {
    let t = &rule.topic;
    let meter = match &rule.meter_field {
        Some(f) => match f.get(obj) {
            Some(Json::Str(s)) => s.to_string(),
            Some(n @ (Json::U(_) | Json::I(_) | Json::F(_))) => n.number_text().unwrap_or_default(),
            _ => topic_meter
                .map(str::to_string)
                .ok_or_else(|| err("missing_field", format!("no meter at `{}`", f.text)))?,
        },
        None => topic_meter
            .map(str::to_string)
            .ok_or_else(|| err("malformed", "no meter for this topic"))?,
    };
    let ts_value = rule
        .timestamp
        .as_ref()
        .and_then(|p| p.get(obj))
        .or(fallback_ts);
    let (ts_ms, time_source) = time_from(ts_value, t.timestamp_unit, recv_ms)?;
    let mut out = Vec::with_capacity(usize::from(rule.value.is_some()) + t.fields.len());
    if let Some(vp) = &rule.value {
        let quantity = match rule
            .quantity_field
            .as_ref()
            .and_then(|f| f.get(obj))
            .and_then(Json::as_str)
        {
            Some(q) => Some(q.to_string()),
            None => t.quantity.clone(),
        };
        out.push(Decoded {
            meter: meter.clone(),
            quantity,
            ts_ms,
            value: number(vp.get(obj), &vp.text)?,
            time_source,
        });
    }
    for f in &t.fields {
        if let Some(v) = obj.get(f) {
            out.push(Decoded {
                meter: meter.clone(),
                quantity: Some(f.clone()),
                ts_ms,
                value: number(Some(v), f)?,
                time_source,
            });
        }
    }
    if out.is_empty() {
        return Err(err(
            "missing_field",
            format!(
                "none of the mapped fields is present{}",
                t.value
                    .as_deref()
                    .map(|v| format!(" (`{v}`)"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(out)
}

fn number(v: Option<&Json<'_>>, what: &str) -> Result<f64, DecodeError> {
    match v {
        Some(Json::Str(s)) => s.trim().parse().map_err(|_| {
            // Numbers sent as strings are common on gateways; "NaN" passes and is rejected as invalid_value downstream.
            err(
                "non_numeric_value",
                format!("`{what}` = \"{}\" is not a number", clip(s)),
            )
        }),
        Some(other) => other.as_f64().ok_or_else(|| {
            err(
                "non_numeric_value",
                format!("`{what}` is {}, not a number", other.describe()),
            )
        }),
        None => Err(err("missing_field", format!("no `{what}` in the payload"))),
    }
}

/// A timestamp: numbers by unit (auto: by magnitude), strings RFC 3339; none → receive time.
pub fn time_of(
    v: Option<&Value>,
    unit: TimestampUnit,
    recv_ms: i64,
) -> Result<(i64, TimeSource), DecodeError> {
    time_from(v.map(Json::shallow).as_ref(), unit, recv_ms)
}

fn time_from(
    v: Option<&Json<'_>>,
    unit: TimestampUnit,
    recv_ms: i64,
) -> Result<(i64, TimeSource), DecodeError> {
    let Some(v) = v else {
        return Ok((recv_ms, TimeSource::Receive));
    };
    let ms = match v {
        Json::Str(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|_| err("bad_timestamp", format!("`{}` is not RFC 3339", clip(s))))?,
        other => {
            let x = other.as_f64().ok_or_else(|| {
                err(
                    "bad_timestamp",
                    format!(
                        "timestamp {} is neither a number nor RFC 3339",
                        other.describe()
                    ),
                )
            })?;
            let unit = match unit {
                TimestampUnit::Auto if x.abs() >= 1e17 => TimestampUnit::Ns,
                TimestampUnit::Auto if x.abs() >= 1e14 => {
                    return Ok(((x / 1000.0) as i64, TimeSource::Device));
                }
                TimestampUnit::Auto if x.abs() >= 1e11 => TimestampUnit::Ms,
                TimestampUnit::Auto => TimestampUnit::S,
                u => u,
            };
            match unit {
                TimestampUnit::S => (x * 1000.0).round() as i64,
                TimestampUnit::Ns => (x / 1e6) as i64,
                _ => x as i64,
            }
        }
    };
    Ok((ms, TimeSource::Device))
}

fn reason_of(r: meterflow_import::RejectReason) -> &'static str {
    match r {
        meterflow_import::RejectReason::BadTimestamp => "bad_timestamp",
        meterflow_import::RejectReason::NonNumericValue => "non_numeric_value",
        _ => "malformed",
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Rule {
        let t: MqttTopic = match toml::from_str(toml_text) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        Rule::new(t)
    }

    const NOW: i64 = 1_735_689_600_000;

    #[test]
    fn patterns_match_and_capture() {
        let p = Pattern::new("meters/{building}/{meter_id}/energy");
        assert_eq!(p.filter(), "meters/+/+/energy");
        let v = p.matches("meters/b1/m7/energy").expect("match");
        assert_eq!(
            (v["building"].as_str(), v["meter_id"].as_str()),
            ("b1", "m7")
        );
        assert!(
            p.matches("meters/b1/m7/power").is_none() && p.matches("meters/b1/energy").is_none()
        );
        let h = Pattern::new("site/#");
        assert!(h.matches("site/a/b/c").is_some());
    }

    #[test]
    fn number_payload_takes_receive_time() {
        let r =
            rule("pattern = \"w/{meter_id}/volume\"\nformat = \"number\"\nquantity = \"volume\"");
        let d = decode(&[r], "w/water-main/volume", b" 123.45 ", NOW).expect("decoded");
        assert_eq!(
            d,
            vec![Decoded {
                meter: "water-main".into(),
                quantity: Some("volume".into()),
                ts_ms: NOW,
                value: 123.45,
                time_source: TimeSource::Receive
            }]
        );
    }

    #[test]
    fn json_paths_units_and_several_fields() {
        let r = rule(
            "pattern = \"m/{meter_id}\"\nformat = \"json\"\nvalue = \"reading.kwh\"\ntimestamp = \"reading.ts\"\nfields = [\"power\"]",
        );
        // ts in seconds (auto): 1735689600 s = NOW ms.
        let d = decode(
            std::slice::from_ref(&r),
            "m/m1",
            br#"{"reading": {"kwh": 10.5, "ts": 1735689600}, "power": 3}"#,
            0,
        )
        .expect("decoded");
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].value, d[0].ts_ms, d[0].time_source),
            (10.5, NOW, TimeSource::Device)
        );
        assert_eq!((d[1].quantity.as_deref(), d[1].value), (Some("power"), 3.0));
        // ms and RFC 3339 timestamps.
        let d = decode(
            std::slice::from_ref(&r),
            "m/m1",
            br#"{"reading": {"kwh": 1, "ts": 1735689600000}}"#,
            0,
        )
        .expect("ms");
        assert_eq!(d[0].ts_ms, NOW);
        let d = decode(
            std::slice::from_ref(&r),
            "m/m1",
            br#"{"reading": {"kwh": 1, "ts": "2025-01-01T08:00:00+08:00"}}"#,
            0,
        )
        .expect("rfc3339");
        assert_eq!(d[0].ts_ms, NOW);
        // Errors carry a reason.
        assert_eq!(
            decode(std::slice::from_ref(&r), "m/m1", b"{not json", 0).map_err(|e| e.reason),
            Err("malformed")
        );
        assert_eq!(
            decode(
                std::slice::from_ref(&r),
                "m/m1",
                br#"{"reading": {"kwh": "abc"}}"#,
                0
            )
            .map_err(|e| e.reason),
            Err("non_numeric_value")
        );
        assert_eq!(
            decode(std::slice::from_ref(&r), "m/m1", br#"{"other": 1}"#, 0).map_err(|e| e.reason),
            Err("missing_field")
        );
        assert_eq!(
            decode(&[r], "x/m1", b"{}", 0).map_err(|e| e.reason),
            Err("no_mapping")
        );
    }

    #[test]
    fn borrowed_json_reads_escapes_indexes_and_repeated_keys() {
        // `$.` prefix, an array index, an escaped key, a meter id sent as a number.
        let r = rule(
            "pattern = \"j\"\nformat = \"json\"\nvalue = \"$.r.1.ex\"\nmeter_field = \"id\"\nfields = [\"p\"]",
        );
        assert_eq!(r.value.as_ref().map(|p| p.steps.len()), Some(3));
        let d = decode(
            std::slice::from_ref(&r),
            "j",
            br#"{"id": 42, "r": [{"ex": 1}, {"e\u0078": 2.5}], "p": "7"}"#,
            NOW,
        )
        .expect("decoded");
        // value = r[1]["ex"] = 2.5 (the key was written with an escape); p = "7" as text → 7.
        assert_eq!(
            d.iter()
                .map(|x| (x.meter.as_str(), x.quantity.as_deref(), x.value))
                .collect::<Vec<_>>(),
            vec![("42", None, 2.5), ("42", Some("p"), 7.0)]
        );
        // A repeated key: the last one wins, as in serde_json's maps.
        let r = rule("pattern = \"k/{meter_id}\"\nformat = \"json\"\nvalue = \"v\"");
        let d = decode(std::slice::from_ref(&r), "k/m", br#"{"v": 1, "v": 2}"#, NOW).expect("dup");
        assert_eq!(d[0].value, 2.0);
        // Escaped string values are read (owned), and errors name what was there.
        let e =
            decode(std::slice::from_ref(&r), "k/m", br#"{"v": "a\"b"}"#, NOW).map_err(|e| e.detail);
        assert_eq!(e, Err("`v` = \"a\"b\" is not a number".to_string()));
        let e =
            decode(std::slice::from_ref(&r), "k/m", br#"{"v": [1]}"#, NOW).map_err(|e| e.detail);
        assert_eq!(e, Err("`v` is an array, not a number".to_string()));
        let e =
            decode(std::slice::from_ref(&r), "k/m", br#"{"v": true}"#, NOW).map_err(|e| e.detail);
        assert_eq!(e, Err("`v` is true, not a number".to_string()));
        // Negative and large integers keep their value.
        let d = decode(std::slice::from_ref(&r), "k/m", br#"{"v": -3}"#, NOW).expect("neg");
        assert_eq!(d[0].value, -3.0);
        // Nesting beyond serde_json's recursion limit is refused, not a crash.
        let deep = format!("{{\"v\": {}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            decode(&[r], "k/m", deep.as_bytes(), NOW).map_err(|e| e.reason),
            Err("malformed")
        );
    }

    #[test]
    fn json_items_carry_several_meters() {
        let r = rule(
            "pattern = \"gw/+/batch\"\nformat = \"json\"\nitems = \"data\"\nmeter_field = \"id\"\nvalue = \"v\"\nquantity_field = \"q\"\ntimestamp = \"t\"",
        );
        let d = decode(&[r], "gw/7/batch", br#"{"data": [{"id": "a", "v": 1, "q": "volume", "t": 1735689600000}, {"id": "b", "v": 2}]}"#, NOW + 5).expect("decoded");
        assert_eq!(
            d.iter()
                .map(|x| (x.meter.as_str(), x.value, x.ts_ms))
                .collect::<Vec<_>>(),
            vec![("a", 1.0, NOW), ("b", 2.0, NOW + 5)]
        );
        assert_eq!(d[0].quantity.as_deref(), Some("volume"));
    }

    #[test]
    fn sparkplug_metrics_and_line_protocol() {
        let r = rule("pattern = \"spBv1.0/g/DDATA/n/{meter_id}\"\nformat = \"sparkplug\"");
        let d = decode(&[r], "spBv1.0/g/DDATA/n/m9", br#"{"timestamp": 1735689600000, "metrics": [{"name": "energy_import", "value": 5.5}, {"name": "power", "value": 2, "timestamp": 1735689601000}]}"#, 0).expect("decoded");
        assert_eq!(
            d.iter()
                .map(|x| (x.quantity.clone().unwrap_or_default(), x.value, x.ts_ms))
                .collect::<Vec<_>>(),
            vec![
                ("energy_import".into(), 5.5, NOW),
                ("power".into(), 2.0, NOW + 1000)
            ]
        );
        let r = rule("pattern = \"lp\"\nformat = \"line_protocol\"");
        let d = decode(&[r], "lp", b"m,meter=x volume=3 1735689600000000000\n", 0).expect("lp");
        assert_eq!(
            (d[0].meter.as_str(), d[0].value, d[0].ts_ms),
            ("x", 3.0, NOW)
        );
    }
}

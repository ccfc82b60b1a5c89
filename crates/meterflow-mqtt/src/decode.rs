//! Topics and payloads to readings (pure).

use std::collections::HashMap;

use meterflow_model::TimeSource;
use meterflow_model::config::{MqttTopic, PayloadFormat, TimestampUnit};
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
        let parts: Vec<&str> = topic.split('/').collect();
        let mut vars = HashMap::new();
        for (i, seg) in self.segs.iter().enumerate() {
            match seg {
                Seg::Hash => return Some(vars),
                _ if i >= parts.len() => return None,
                Seg::Lit(l) if l != parts[i] => return None,
                Seg::Lit(_) | Seg::Plus => {}
                Seg::Var(name) => {
                    vars.insert(name.clone(), parts[i].to_string());
                }
            }
        }
        (parts.len() == self.segs.len()).then_some(vars)
    }
}

/// A topic mapping with its compiled pattern.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The mapping.
    pub topic: MqttTopic,
    /// Its pattern.
    pub pattern: Pattern,
}

impl Rule {
    /// Compile a mapping.
    pub fn new(topic: MqttTopic) -> Rule {
        Rule {
            pattern: Pattern::new(&topic.pattern),
            topic,
        }
    }
}

/// Decode a message on `topic` with the first matching rule.
pub fn decode(
    rules: &[Rule],
    topic: &str,
    payload: &[u8],
    recv_ms: i64,
) -> Result<Vec<Decoded>, DecodeError> {
    let Some((rule, vars)) = rules
        .iter()
        .find_map(|r| r.pattern.matches(topic).map(|v| (r, v)))
    else {
        return Err(err(
            "no_mapping",
            format!("no [[mqtt.topic]] pattern matches `{topic}`"),
        ));
    };
    let text = std::str::from_utf8(payload)
        .map_err(|e| err("malformed", format!("payload is not UTF-8: {e}")))?;
    let t = &rule.topic;
    let topic_meter = vars.get("meter_id").cloned().or_else(|| t.meter.clone());
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
                meter,
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
            let v: Value = serde_json::from_str(text)
                .map_err(|e| err("malformed", format!("not JSON: {e}")))?;
            let top_ts = t.timestamp.as_deref().and_then(|p| path(&v, p));
            match t.items.as_deref() {
                Some(items) => {
                    let arr = path(&v, items)
                        .and_then(Value::as_array)
                        .ok_or_else(|| err("missing_field", format!("no array at `{items}`")))?;
                    let mut out = Vec::new();
                    for item in arr {
                        out.extend(one_object(
                            t,
                            item,
                            topic_meter.as_deref(),
                            top_ts,
                            recv_ms,
                        )?);
                    }
                    Ok(out)
                }
                None => one_object(t, &v, topic_meter.as_deref(), None, recv_ms),
            }
        }
        PayloadFormat::Sparkplug => {
            let v: Value = serde_json::from_str(text)
                .map_err(|e| err("malformed", format!("not JSON: {e}")))?;
            let meter = topic_meter.ok_or_else(|| err("malformed", "no meter for this topic"))?;
            let metrics = v
                .get("metrics")
                .and_then(Value::as_array)
                .ok_or_else(|| err("missing_field", "no `metrics` array"))?;
            let msg_ts = v.get("timestamp");
            let mut out = Vec::new();
            for m in metrics {
                let name = m
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("missing_field", "a metric has no `name`"))?;
                let value = number(m.get("value"), name)?;
                let (ts_ms, time_source) =
                    time_of(m.get("timestamp").or(msg_ts), TimestampUnit::Ms, recv_ms)?;
                out.push(Decoded {
                    meter: meter.clone(),
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
    t: &MqttTopic,
    obj: &Value,
    topic_meter: Option<&str>,
    fallback_ts: Option<&Value>,
    recv_ms: i64,
) -> Result<Vec<Decoded>, DecodeError> {
    let meter = match t.meter_field.as_deref() {
        Some(f) => match path(obj, f) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => topic_meter
                .map(str::to_string)
                .ok_or_else(|| err("missing_field", format!("no meter at `{f}`")))?,
        },
        None => topic_meter
            .map(str::to_string)
            .ok_or_else(|| err("malformed", "no meter for this topic"))?,
    };
    let ts_value = t
        .timestamp
        .as_deref()
        .and_then(|p| path(obj, p))
        .or(fallback_ts);
    let (ts_ms, time_source) = time_of(ts_value, t.timestamp_unit, recv_ms)?;
    let mut out = Vec::new();
    if let Some(vp) = t.value.as_deref() {
        let quantity = match t
            .quantity_field
            .as_deref()
            .and_then(|f| path(obj, f))
            .and_then(Value::as_str)
        {
            Some(q) => Some(q.to_string()),
            None => t.quantity.clone(),
        };
        out.push(Decoded {
            meter: meter.clone(),
            quantity,
            ts_ms,
            value: number(path(obj, vp), vp)?,
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

/// A dotted JSON path (`a.b.0.c`).
pub fn path<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    p.trim_start_matches("$.")
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(v, |cur, seg| match cur {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
}

fn number(v: Option<&Value>, what: &str) -> Result<f64, DecodeError> {
    match v {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| err("non_numeric_value", format!("`{what}` is out of range"))),
        // Numbers sent as strings are common on gateways; "NaN" passes and is rejected as invalid_value downstream.
        Some(Value::String(s)) => s.trim().parse().map_err(|_| {
            err(
                "non_numeric_value",
                format!("`{what}` = \"{}\" is not a number", clip(s)),
            )
        }),
        Some(other) => Err(err(
            "non_numeric_value",
            format!("`{what}` is {other}, not a number"),
        )),
        None => Err(err("missing_field", format!("no `{what}` in the payload"))),
    }
}

/// A timestamp: numbers by unit (auto: by magnitude), strings RFC 3339; none → receive time.
pub fn time_of(
    v: Option<&Value>,
    unit: TimestampUnit,
    recv_ms: i64,
) -> Result<(i64, TimeSource), DecodeError> {
    let Some(v) = v else {
        return Ok((recv_ms, TimeSource::Receive));
    };
    let ms = match v {
        Value::Number(n) => {
            let x = n
                .as_f64()
                .ok_or_else(|| err("bad_timestamp", "timestamp out of range"))?;
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
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|_| err("bad_timestamp", format!("`{}` is not RFC 3339", clip(s))))?,
        other => {
            return Err(err(
                "bad_timestamp",
                format!("timestamp {other} is neither a number nor RFC 3339"),
            ));
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

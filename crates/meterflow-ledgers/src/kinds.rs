//! The table of entry kinds of the four ledgers: each kind's fields (for the
//! OpenAPI document and the CSV import), the dispatch of an entry to its
//! ledger's checks, and the event it becomes.

use meterflow_model::Site;
use meterflow_store::LedgerEvent;
use serde_json::{Map, Value, json};

use crate::rules::{Reject, date_field, reject, typed};

/// The type of a field.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// Free text.
    Str,
    /// A number.
    Num,
    /// A local date `YYYY-MM-DD`.
    Date,
    /// One of the listed values.
    Enum(&'static [&'static str]),
}

/// One field of an entry.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Name (JSON key and CSV column).
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
    /// Must be present.
    pub required: bool,
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

/// One kind of ledger entry.
#[derive(Debug)]
pub struct Kind {
    /// Ledger: `space`, `vehicles`, `waste`, `assets`.
    pub ledger: &'static str,
    /// The kind as stored.
    pub kind: &'static str,
    /// Its URL segment: `/api/v1/ledgers/{ledger}/{path}`.
    pub path: &'static str,
    /// What one entry is called in messages.
    pub noun: &'static str,
    /// What `time` means for this kind.
    pub time: &'static str,
    /// Fields besides `time`.
    pub fields: &'static [Field],
}

/// Every kind, in the OpenAPI document's order.
pub const KINDS: &[Kind] = &[
    Kind {
        ledger: "space",
        kind: "room",
        path: "rooms",
        noun: "room",
        time: "registered (a later entry for the same room replaces its description from then on)",
        fields: &[
            req("room", Ty::Str),
            req("building", Ty::Str),
            opt("zone", Ty::Str),
            opt("floor", Ty::Str),
            req("use_type", Ty::Enum(&crate::space::USE_TYPES)),
            req("usable_m2", Ty::Num),
            opt("area_m2", Ty::Num),
        ],
    },
    Kind {
        ledger: "space",
        kind: "allocation",
        path: "allocations",
        noun: "allocation",
        time: "valid from (until `until`, or the room's next allocation)",
        fields: &[
            req("room", Ty::Str),
            req("agency", Ty::Str),
            req("agreement", Ty::Str),
            opt("until", Ty::Date),
        ],
    },
    Kind {
        ledger: "space",
        kind: "occupant",
        path: "occupants",
        noun: "occupant",
        time: "from (a later entry for the same person moves them; no room = left)",
        fields: &[
            req("person", Ty::Str),
            req("agency", Ty::Str),
            req("rank", Ty::Str),
            opt("room", Ty::Str),
        ],
    },
    Kind {
        ledger: "space",
        kind: "headcount",
        path: "headcounts",
        noun: "headcount",
        time: "effective from (the per-capita denominators use it from that day on)",
        fields: &[
            req("agency", Ty::Str),
            req("persons", Ty::Num),
            opt("establishment", Ty::Num),
            opt("off_establishment", Ty::Num),
            opt("source", Ty::Str),
        ],
    },
    Kind {
        ledger: "vehicles",
        kind: "vehicle",
        path: "vehicles",
        noun: "vehicle",
        time: "registered",
        fields: &[
            req("plate", Ty::Str),
            req("agency", Ty::Str),
            req("fuel", Ty::Enum(&crate::vehicles::FUELS)),
            req("purpose", Ty::Enum(&crate::vehicles::PURPOSES)),
            opt("vehicle_type", Ty::Str),
            opt("odometer_km", Ty::Num),
        ],
    },
    Kind {
        ledger: "vehicles",
        kind: "trip",
        path: "trips",
        noun: "trip",
        time: "departure",
        fields: &[
            req("plate", Ty::Str),
            req("start_km", Ty::Num),
            req("end_km", Ty::Num),
            opt("driver", Ty::Str),
            opt("order", Ty::Str),
            opt("purpose", Ty::Str),
        ],
    },
    Kind {
        ledger: "vehicles",
        kind: "fuel",
        path: "fuel-fills",
        noun: "fuel fill",
        time: "filled",
        fields: &[
            req("plate", Ty::Str),
            req("litres", Ty::Num),
            req("amount_cny", Ty::Num),
            opt("card", Ty::Str),
            opt("odometer_km", Ty::Num),
        ],
    },
    Kind {
        ledger: "vehicles",
        kind: "maintenance",
        path: "maintenance",
        noun: "maintenance",
        time: "done",
        fields: &[
            req("plate", Ty::Str),
            req("work", Ty::Enum(&crate::vehicles::WORKS)),
            req("amount_cny", Ty::Num),
            req("odometer_km", Ty::Num),
            opt("garage", Ty::Str),
        ],
    },
    Kind {
        ledger: "vehicles",
        kind: "insurance",
        path: "insurance",
        noun: "insurance",
        time: "paid",
        fields: &[
            req("plate", Ty::Str),
            req("amount_cny", Ty::Num),
            opt("policy", Ty::Str),
            opt("until", Ty::Date),
        ],
    },
    Kind {
        ledger: "vehicles",
        kind: "toll",
        path: "tolls",
        noun: "toll",
        time: "paid",
        fields: &[req("plate", Ty::Str), req("amount_cny", Ty::Num)],
    },
    Kind {
        ledger: "vehicles",
        kind: "disposal",
        path: "disposals",
        noun: "disposal",
        time: "disposed (no entries for the vehicle after it)",
        fields: &[req("plate", Ty::Str), opt("reason", Ty::Str)],
    },
    Kind {
        ledger: "waste",
        kind: "weigh_in",
        path: "weigh-ins",
        noun: "weigh-in",
        time: "weighed",
        fields: &[
            req("agency", Ty::Str),
            req("point", Ty::Str),
            req("category", Ty::Enum(&crate::waste::CATEGORIES)),
            req("kg", Ty::Num),
            req("destination", Ty::Enum(&crate::waste::DESTINATIONS)),
            opt("company", Ty::Str),
            opt("receipt", Ty::Str),
        ],
    },
    Kind {
        ledger: "assets",
        kind: "card",
        path: "cards",
        noun: "asset card",
        time: "acquired (depreciation starts that month)",
        fields: &[
            req("epc", Ty::Str),
            req("category", Ty::Str),
            req("value_cny", Ty::Num),
            req("life_years", Ty::Num),
            req("agency", Ty::Str),
            opt("room", Ty::Str),
            opt("custodian", Ty::Str),
            opt("model", Ty::Str),
        ],
    },
    Kind {
        ledger: "assets",
        kind: "event",
        path: "events",
        noun: "asset event",
        time: "happened",
        fields: &[
            req("epc", Ty::Str),
            req("action", Ty::Enum(&crate::assets::ACTIONS)),
            opt("agency", Ty::Str),
            opt("room", Ty::Str),
            opt("custodian", Ty::Str),
            opt("note", Ty::Str),
        ],
    },
    Kind {
        ledger: "assets",
        kind: "scan",
        path: "scans",
        noun: "scan",
        time: "read by the RFID reader",
        fields: &[
            req("epc", Ty::Str),
            req("room", Ty::Str),
            opt("reader", Ty::Str),
        ],
    },
];

/// The kind at `/api/v1/ledgers/{ledger}/{path}`.
pub fn find(ledger: &str, path: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.ledger == ledger && k.path == path)
}

/// The ledgers' names.
pub const LEDGERS: [&str; 4] = ["space", "vehicles", "waste", "assets"];

/// A checked entry, ready to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// When (UTC ms).
    pub ts_ms: i64,
    /// Agency it belongs to.
    pub agency: Option<String>,
    /// Its fields (without `time`), normalised.
    pub body: Value,
}

/// The JSON schema of an entry of `kind` (with `time`).
pub fn schema(kind: &Kind) -> Value {
    let mut props = Map::new();
    props.insert(
        "time".into(),
        json!({"type": "string", "description": kind.time}),
    );
    let mut required = vec![json!("time")];
    for f in kind.fields {
        let s = match f.ty {
            Ty::Str => json!({"type": "string", "minLength": 1}),
            Ty::Num => json!({"type": "number"}),
            Ty::Date => json!({"type": "string", "format": "date"}),
            Ty::Enum(vals) => json!({"type": "string", "enum": vals}),
        };
        props.insert(f.name.into(), s);
        if f.required {
            required.push(json!(f.name));
        }
    }
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

/// The Chinese names clerks write for the coded values, by field:
/// `(field, written, code)`.
pub const ALIASES: &[(&str, &str, &str)] = &[
    ("category", "可回收物", "recyclable"),
    ("category", "可回收垃圾", "recyclable"),
    ("category", "厨余垃圾", "kitchen"),
    ("category", "餐厨垃圾", "kitchen"),
    ("category", "湿垃圾", "kitchen"),
    ("category", "有害垃圾", "hazardous"),
    ("category", "其他垃圾", "residual"),
    ("category", "干垃圾", "residual"),
    ("destination", "回收利用", "recycling"),
    ("destination", "再生利用", "recycling"),
    ("destination", "资源化利用", "recycling"),
    ("destination", "堆肥", "composting"),
    ("destination", "厌氧消化", "anaerobic_digestion"),
    ("destination", "无害化处理", "hazardous_treatment"),
    ("destination", "危废处置", "hazardous_treatment"),
    ("destination", "焚烧", "incineration"),
    ("destination", "焚烧发电", "incineration"),
    ("destination", "填埋", "landfill"),
    ("fuel", "汽油", "gasoline"),
    ("fuel", "柴油", "diesel"),
    ("fuel", "电动", "electric"),
    ("fuel", "纯电动", "electric"),
    ("purpose", "执法执勤", "enforcement"),
    ("purpose", "领导保障", "leadership"),
    ("purpose", "调研接待", "reception"),
    ("purpose", "一般公务", "general"),
    ("work", "保养", "routine"),
    ("work", "例行保养", "routine"),
    ("work", "维护", "service"),
    ("work", "二级维护", "service"),
    ("work", "轮胎", "tyres"),
    ("work", "更换轮胎", "tyres"),
    ("work", "维修", "repair"),
    ("work", "修理", "repair"),
    ("use_type", "办公用房", "office"),
    ("use_type", "办公室", "office"),
    ("use_type", "服务用房", "service"),
    ("use_type", "设备用房", "equipment"),
    ("use_type", "附属用房", "ancillary"),
    ("action", "领用", "assign"),
    ("action", "调拨", "transfer"),
    ("action", "维修", "repair"),
    ("action", "归还", "return"),
    ("action", "处置", "dispose"),
    ("action", "报废", "dispose"),
];

/// An entry as a clerk wrote it into the form the rules read: numbers given
/// as text (`"2.0"`, ` 1,234.5 `) become numbers, Chinese names of coded
/// values become their codes (`厨余垃圾` → `kitchen`), dates written
/// `2026/12/2` or `2026年12月2日` become `2026-12-02`. What cannot be read is
/// left for the rules to refuse, naming the field.
fn as_written(kind: &Kind, body: &mut Value) -> Result<(), Reject> {
    let Some(o) = body.as_object_mut() else {
        return Ok(());
    };
    for f in kind.fields {
        let Some(Value::String(text)) = o.get(f.name) else {
            continue;
        };
        let t = text.trim();
        let new = match f.ty {
            Ty::Num => {
                let n: f64 = t
                    .replace([',', '，'], "")
                    .parse()
                    .map_err(|_| reject(f.name, format!("`{t}` is not a number")))?;
                json!(n)
            }
            Ty::Enum(codes) => {
                if codes.contains(&t) {
                    json!(t)
                } else if let Some((_, _, code)) =
                    ALIASES.iter().find(|(n, w, _)| *n == f.name && *w == t)
                {
                    json!(code)
                } else {
                    let named: Vec<String> = codes
                        .iter()
                        .map(|c| {
                            match ALIASES
                                .iter()
                                .find(|(n, _, code)| *n == f.name && code == c)
                            {
                                Some((_, w, _)) => format!("{c} ({w})"),
                                None => (*c).to_string(),
                            }
                        })
                        .collect();
                    return Err(reject(
                        f.name,
                        format!("`{t}`: one of {}", named.join(", ")),
                    ));
                }
            }
            Ty::Date => json!(crate::rules::date_field(f.name, t)?.to_string()),
            Ty::Str => continue,
        };
        o.insert(f.name.to_string(), new);
    }
    Ok(())
}

/// Check an entry of `kind` (a JSON object with `time`) against the site and
/// the ledger's events in effect so far (`state`, in time order).
pub fn check(
    site: &Site,
    kind: &Kind,
    state: &[LedgerEvent],
    v: &Value,
) -> Result<Checked, Reject> {
    let Some(obj) = v.as_object() else {
        return Err(reject("body", "an entry is a JSON object"));
    };
    let time = obj
        .get("time")
        .and_then(Value::as_str)
        .ok_or_else(|| reject("time", "`time` (RFC 3339 or local date/time) is required"))?;
    let ts_ms =
        meterflow_core::timeparse::parse_time_arg(time, site.tz).map_err(|e| reject("time", e))?;
    crate::rules::entry_time(
        ts_ms,
        site.site_earliest_ms(),
        meterflow_model::clock::now_ms(),
    )?;
    let mut body = v.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("time");
        // Absent and null are the same for optional fields.
        o.retain(|_, x| !x.is_null());
    }
    as_written(kind, &mut body)?;
    // An agency written by its name (市财政局) is the agency of that name.
    if let Some(Value::String(a)) = body.get_mut("agency")
        && let Some(x) = site.agencies.iter().find(|x| x.name == a.trim())
    {
        *a = x.id.clone();
    }
    for f in kind.fields {
        if let (Ty::Date, Some(s)) = (f.ty, body.get(f.name).and_then(Value::as_str)) {
            date_field(f.name, s)?;
        }
    }
    let (agency, body) = match kind.ledger {
        "space" => crate::space::check(site, kind.kind, state, ts_ms, body)?,
        "vehicles" => crate::vehicles::check(site, kind.kind, state, ts_ms, body)?,
        "assets" => crate::assets::check(site, kind.kind, state, ts_ms, body)?,
        "waste" => {
            let w: crate::waste::WeighIn = typed(&body)?;
            w.check(site).map_err(|(f, m)| reject(f, m))?;
            (
                Some(w.agency.clone()),
                serde_json::to_value(&w).map_err(|e| reject("body", e.to_string()))?,
            )
        }
        other => return Err(reject("ledger", format!("no ledger `{other}`"))),
    };
    Ok(Checked {
        ts_ms,
        agency,
        body,
    })
}

/// The field a column header names: the field's name (`plate`) or its
/// Chinese label (`车牌号`); `time` is also `时间` or the kind's own word for
/// it (`出车时间`).
pub fn column<'k>(kind: &'k Kind, header: &str) -> Option<&'k str> {
    let h = header.trim();
    if h == "time" || h == "时间" || h == kind_zh(kind).1 {
        return Some("time");
    }
    kind.fields
        .iter()
        .find(|f| f.name == h || label_zh(f.name) == h)
        .map(|f| f.name)
}

/// One row of a CSV file as an entry: the header names the fields (`time`
/// and the kind's fields, by name or Chinese label); empty cells are
/// absent; numbers are parsed; an Excel serial date (`46358`) in the time
/// or a date column is read as the date it stands for.
pub fn csv_row(kind: &Kind, headers: &[String], row: &[String]) -> Result<Value, Reject> {
    let mut o = Map::new();
    for (h, cell) in headers.iter().zip(row) {
        let cell = cell.trim();
        if cell.is_empty() {
            continue;
        }
        let Some(name) = column(kind, h) else {
            return Err(reject(h, format!("unknown column `{h}`")));
        };
        let serial = meterflow_core::timeparse::excel_serial(cell);
        if name == "time" {
            let t = match serial {
                Some(t) if t.time() == chrono::NaiveTime::MIN => t.date().to_string(),
                Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
                None => cell.to_string(),
            };
            o.insert("time".into(), json!(t));
            continue;
        }
        let Some(f) = kind.fields.iter().find(|f| f.name == name) else {
            continue;
        };
        let v = match (f.ty, serial) {
            (Ty::Num, _) => {
                let n: f64 = cell
                    .replace([',', '，'], "")
                    .parse()
                    .map_err(|_| reject(name, format!("`{cell}` is not a number")))?;
                json!(n)
            }
            (Ty::Date, Some(t)) => json!(t.date().to_string()),
            _ => json!(cell),
        };
        o.insert(name.to_string(), v);
    }
    Ok(Value::Object(o))
}

/// Check that a CSV header names only known columns and every required one.
pub fn csv_header(kind: &Kind, headers: &[String]) -> Result<(), Reject> {
    let named: Vec<&str> = headers.iter().filter_map(|h| column(kind, h)).collect();
    for h in headers {
        if column(kind, h).is_none() {
            let known: Vec<&str> = std::iter::once("time")
                .chain(kind.fields.iter().map(|f| f.name))
                .collect();
            return Err(reject(
                h,
                format!("unknown column `{h}`; the columns are {}", known.join(", ")),
            ));
        }
    }
    for f in
        std::iter::once("time").chain(kind.fields.iter().filter(|f| f.required).map(|f| f.name))
    {
        if !named.contains(&f) {
            return Err(reject(
                f,
                format!("the column `{f}` ({}) is required", label_zh(f)),
            ));
        }
    }
    Ok(())
}

/// An event appended in this process, as the store will return it (for
/// checking later rows of the same import against earlier ones).
pub fn as_event(kind: &Kind, c: &Checked, id: i64, author: &str) -> LedgerEvent {
    LedgerEvent {
        id,
        ledger: kind.ledger.to_string(),
        kind: kind.kind.to_string(),
        agency: c.agency.clone(),
        ts_ms: c.ts_ms,
        body: c.body.to_string(),
        corrects: None,
        void: false,
        author: author.to_string(),
        created_ms: 0,
    }
}

/// The Chinese label of a field, as forms show it and import headers may
/// name it; the field's own name when it has none.
pub fn label_zh(field: &str) -> &str {
    LABELS_ZH
        .iter()
        .find(|(f, _)| *f == field)
        .map_or(field, |(_, l)| l)
}

/// The Chinese labels of the fields of every kind: `(field, label)`.
pub const LABELS_ZH: &[(&str, &str)] = &[
    ("time", "时间"),
    ("room", "房间号"),
    ("building", "楼栋"),
    ("zone", "区域"),
    ("floor", "楼层"),
    ("use_type", "用房类型"),
    ("usable_m2", "使用面积(m²)"),
    ("area_m2", "建筑面积(m²)"),
    ("agency", "单位"),
    ("agreement", "协议编号"),
    ("until", "截止日期"),
    ("person", "人员"),
    ("rank", "职级"),
    ("persons", "人数"),
    ("establishment", "编制数"),
    ("off_establishment", "编外人数"),
    ("source", "依据"),
    ("plate", "车牌号"),
    ("fuel", "燃料"),
    ("purpose", "用途"),
    ("vehicle_type", "车型"),
    ("odometer_km", "里程表读数(km)"),
    ("start_km", "出车里程(km)"),
    ("end_km", "收车里程(km)"),
    ("driver", "驾驶员"),
    ("order", "派车单号"),
    ("litres", "加油量(升)"),
    ("amount_cny", "金额(元)"),
    ("card", "油卡号"),
    ("work", "项目"),
    ("garage", "维修单位"),
    ("policy", "保单号"),
    ("reason", "原因"),
    ("point", "投放点"),
    ("category", "类别"),
    ("kg", "重量(kg)"),
    ("destination", "去向"),
    ("company", "收运单位"),
    ("receipt", "联单号"),
    ("epc", "标签(EPC)"),
    ("value_cny", "原值(元)"),
    ("life_years", "使用年限(年)"),
    ("custodian", "保管人"),
    ("model", "型号"),
    ("action", "事项"),
    ("note", "备注"),
    ("reader", "读写器"),
];

/// A kind's Chinese noun and its word for `time`.
pub fn kind_zh(kind: &Kind) -> (&'static str, &'static str) {
    match kind.kind {
        "room" => ("房间", "登记日期"),
        "allocation" => ("用房分配", "生效日期"),
        "occupant" => ("人员入驻", "入驻日期"),
        "headcount" => ("编制人数", "生效日期"),
        "vehicle" => ("车辆", "登记日期"),
        "trip" => ("出车", "出车时间"),
        "fuel" => ("加油", "加油时间"),
        "maintenance" => ("维修保养", "完成日期"),
        "insurance" => ("保险", "缴费日期"),
        "toll" => ("通行费", "缴费时间"),
        "disposal" => ("车辆处置", "处置日期"),
        "weigh_in" => ("垃圾称重", "称重时间"),
        "card" => ("资产卡片", "取得日期"),
        "event" => ("资产变动", "发生日期"),
        "scan" => ("盘点扫描", "扫描时间"),
        _ => (kind.noun, "时间"),
    }
}

/// A ledger's Chinese name.
pub fn ledger_zh(ledger: &str) -> &str {
    match ledger {
        "space" => "办公用房",
        "vehicles" => "公务用车",
        "waste" => "垃圾分类",
        "assets" => "固定资产",
        other => other,
    }
}

/// The Chinese name of a coded value of `field` (the first alias), if any.
pub fn value_zh(field: &str, code: &str) -> Option<&'static str> {
    ALIASES
        .iter()
        .find(|(f, _, c)| *f == field && *c == code)
        .map(|(_, w, _)| *w)
}

/// What a checked entry would raise as an anomaly once recorded (an
/// odometer below one read before), for a form to ask for confirmation:
/// `(field, message)`; empty when nothing.
pub fn warnings(kind: &Kind, state: &[LedgerEvent], c: &Checked) -> Vec<(String, String)> {
    match kind.ledger {
        "vehicles" => crate::vehicles::warnings(kind.kind, state, c.ts_ms, &c.body),
        _ => Vec::new(),
    }
}

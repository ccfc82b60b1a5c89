//! `meterflow ledger export` / `import`: the ledgers' events as JSON lines,
//! ids kept, so ledgers move between sites or shards; importing twice
//! changes nothing (`LedgerDb::import_events`).

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use meterflow_store::{ImportRefused, LedgerDb, LedgerEvent};

/// `meterflow ledger export`.
pub(crate) fn export(config: &Path, ledger: Option<&str>, out: &Path) -> anyhow::Result<ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if let Some(l) = ledger
        && !meterflow_ledgers::LEDGERS.contains(&l)
    {
        eprintln!(
            "error: no ledger `{l}`: one of {}",
            meterflow_ledgers::LEDGERS.join(", ")
        );
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    }
    let db = site.store_path();
    if !db.exists() {
        eprintln!("error: no store at {} yet", db.display());
        return Ok(ExitCode::FAILURE);
    }
    let events = LedgerDb::open(&db)?.all(ledger)?;
    let mut text = String::new();
    for e in &events {
        text.push_str(&serde_json::to_string(e)?);
        text.push('\n');
    }
    if out == Path::new("-") {
        std::io::stdout().write_all(text.as_bytes())?;
    } else {
        std::fs::write(out, text)?;
        eprintln!(
            "{} ledger events written to {}",
            events.len(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a line is not an event this site can hold.
fn check_line(site: &meterflow_model::Site, e: &LedgerEvent, latest_ms: i64) -> Result<(), String> {
    if !meterflow_ledgers::KINDS
        .iter()
        .any(|k| k.ledger == e.ledger && k.kind == e.kind)
    {
        return Err(format!("no kind `{}` in ledger `{}`", e.kind, e.ledger));
    }
    if let Some(a) = &e.agency
        && !site.agencies.iter().any(|x| &x.id == a)
    {
        return Err(format!("agency `{a}` is not in this site"));
    }
    if e.ts_ms < site.site_earliest_ms() || e.ts_ms > latest_ms {
        return Err(format!(
            "time {} ms is outside this site's plausible window",
            e.ts_ms
        ));
    }
    if !serde_json::from_str::<serde_json::Value>(&e.body).is_ok_and(|v| v.is_object()) {
        return Err("`body` is not a JSON object".into());
    }
    if e.id <= 0 {
        return Err(format!("id {} is not a stored event's", e.id));
    }
    Ok(())
}

/// `meterflow ledger import`.
pub(crate) fn import(config: &Path, file: &Path) -> anyhow::Result<ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let latest = meterflow_model::clock::now_ms() + 366 * 86_400_000;
    let mut events = Vec::new();
    let mut errors = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<LedgerEvent>(&line)
            .map_err(|e| format!("not a ledger event: {e}"))
            .and_then(|e| check_line(&site, &e, latest).map(|()| e));
        match parsed {
            Ok(e) => events.push(e),
            Err(reason) => {
                errors += 1;
                if errors <= 20 {
                    eprintln!("{}:{}: {reason}", file.display(), i + 1);
                }
            }
        }
    }
    if errors > 0 {
        eprintln!("error: {errors} bad lines; nothing was imported");
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    }
    let mut db = LedgerDb::open(&site.store_path())?;
    match db.import_events(&events) {
        Ok((added, present)) => {
            println!(
                "{added} ledger events added, {present} already here (of {} in {})",
                events.len(),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportRefused::Store(e)) => Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(crate::EXIT_CONFIG))
        }
    }
}

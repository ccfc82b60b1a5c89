//! The .deb of deploy/deb/: built from this test run's binary, installed
//! with dpkg on this machine, used from the installed paths as the service
//! user, upgraded over a changed site file, removed and purged. It changes
//! the system (a package, a user), so it runs only as root (CI runs as root)
//! and says so otherwise.

use std::path::Path;
use std::process::{Command, Output};

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        // A debug binary is large: package it fast.
        .env("DEB_COMPRESS", "gzip")
        .env("DEB_LEVEL", "1")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn ok(o: &Output, what: &str) -> String {
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{what}: {out}");
    out
}

fn owner(path: &str) -> String {
    let o = sh("stat", &["-c", "%U:%G %a", path]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn the_deb_installs_runs_as_its_user_keeps_a_changed_config_and_purges_cleanly() {
    let root = sh("id", &["-u"]);
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        eprintln!("skipped: installing a .deb needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let o = sh(
        "sh",
        &[
            crate::support::repo()
                .join("deploy/deb/build.sh")
                .to_str()
                .expect("path"),
            env!("CARGO_BIN_EXE_meterflow-e2e"),
            "0.1.0",
            dir.path().to_str().expect("path"),
        ],
    );
    let deb = ok(&o, "build.sh").trim().to_string();
    assert!(Path::new(&deb).exists(), "{deb}");
    let contents = ok(&sh("dpkg-deb", &["--contents", &deb]), "contents");
    for f in [
        "./usr/bin/meterflow",
        "./lib/systemd/system/meterflow.service",
        "./lib/systemd/system/meterflow-backup.timer",
        "./etc/meterflow/site.toml",
    ] {
        assert!(contents.contains(f), "{f} in\n{contents}");
    }
    // Leftovers of an earlier failed run would hide what this one does.
    let _ = sh("dpkg", &["--purge", "meterflow"]);

    ok(&sh("dpkg", &["-i", &deb]), "dpkg -i");
    assert!(
        sh("getent", &["passwd", "meterflow"]).status.success(),
        "user"
    );
    assert_eq!(owner("/var/lib/meterflow"), "meterflow:meterflow 750");
    assert_eq!(owner("/var/backups/meterflow"), "meterflow:meterflow 750");
    assert_eq!(owner("/etc/meterflow/env"), "root:meterflow 640");
    let unit = std::fs::read_to_string("/lib/systemd/system/meterflow.service").expect("unit");
    assert!(unit.contains("ExecStart=/usr/bin/meterflow run --config /etc/meterflow/site.toml"));

    // As the service user, from the installed paths.
    let as_user = |args: &[&str]| {
        let mut all = vec!["-u", "meterflow", "--", "/usr/bin/meterflow"];
        all.extend_from_slice(args);
        sh("runuser", &all)
    };
    ok(
        &as_user(&["check", "--config", "/etc/meterflow/site.toml"]),
        "check as meterflow",
    );
    ok(
        &as_user(&[
            "run",
            "--config",
            "/etc/meterflow/site.toml",
            "--seconds",
            "3",
        ]),
        "run as meterflow",
    );
    assert!(owner("/var/lib/meterflow/meterflow.db").starts_with("meterflow:meterflow 6"));
    ok(
        &as_user(&[
            "backup",
            "--config",
            "/etc/meterflow/site.toml",
            "--out",
            "/var/backups/meterflow",
        ]),
        "backup as meterflow",
    );

    // A changed site file survives reinstalling (dpkg keeps conffiles).
    let mut site = std::fs::read_to_string("/etc/meterflow/site.toml").expect("site");
    site.push_str("\n# changed by the site's IT\n");
    std::fs::write("/etc/meterflow/site.toml", &site).expect("edit");
    ok(&sh("dpkg", &["-i", &deb]), "dpkg -i again");
    assert_eq!(
        std::fs::read_to_string("/etc/meterflow/site.toml").expect("site"),
        site
    );

    // Remove keeps configuration and data; purge takes them, keeps backups.
    ok(&sh("dpkg", &["--remove", "meterflow"]), "remove");
    assert!(!Path::new("/usr/bin/meterflow").exists());
    assert!(Path::new("/etc/meterflow/site.toml").exists());
    assert!(Path::new("/var/lib/meterflow/meterflow.db").exists());
    ok(&sh("dpkg", &["--purge", "meterflow"]), "purge");
    assert!(!Path::new("/etc/meterflow").exists(), "config purged");
    assert!(!Path::new("/var/lib/meterflow").exists(), "store purged");
    assert!(
        !sh("getent", &["passwd", "meterflow"]).status.success(),
        "user gone"
    );
    let backups: Vec<_> = std::fs::read_dir("/var/backups/meterflow")
        .expect("backups kept")
        .collect();
    assert!(!backups.is_empty(), "the backup survives the purge");
    let _ = std::fs::remove_dir_all("/var/backups/meterflow");
}

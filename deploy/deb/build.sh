#!/bin/sh
# Build the meterflow .deb from a built binary (a Kylin / UOS / Debian
# server installs it with dpkg -i or apt install ./meterflow_*.deb):
#   cargo build --release -p meterflow
#   sh deploy/deb/build.sh target/release/meterflow 0.1.0 dist/
# Contents: /usr/bin/meterflow; the systemd units (service, backup service
# and timer); /etc/meterflow/{site.toml,env,api-tokens} as conffiles (dpkg
# never overwrites a changed one); the system user `meterflow` and
# /var/lib/meterflow, /var/backups/meterflow made by postinst.
set -eu
bin="$1"; version="$2"; out="$3"
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$(dirname "$here")"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
umask 022
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/etc/meterflow" "$stage/usr/share/doc/meterflow"
install -m 0755 "$bin" "$stage/usr/bin/meterflow"
for unit in meterflow.service meterflow-backup.service meterflow-backup.timer; do
    sed 's#/usr/local/bin/meterflow#/usr/bin/meterflow#g' "$deploy/systemd/$unit" \
        > "$stage/lib/systemd/system/$unit"
    chmod 0644 "$stage/lib/systemd/system/$unit"
done
install -m 0644 "$here/site.toml" "$stage/etc/meterflow/site.toml"
printf '%s\n' "# Secrets for meterflow (KEY=value), read by the systemd units: the" \
    "# environment variables the site file names (password_env, token_env," \
    "# tokens_env). Keep this file mode 0600." > "$stage/etc/meterflow/env"
chmod 0600 "$stage/etc/meterflow/env"
printf '%s\n' "# ROLE sha256:HEX, one per line (meterflow token --role ROLE)" \
    > "$stage/etc/meterflow/api-tokens"
chmod 0600 "$stage/etc/meterflow/api-tokens"
printf '%s\n' /etc/meterflow/site.toml /etc/meterflow/env /etc/meterflow/api-tokens \
    > "$stage/DEBIAN/conffiles"
install -m 0644 "$deploy/../README.md" "$stage/usr/share/doc/meterflow/README.md"
size="$(du -sk "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: meterflow
Version: $version
Architecture: $arch
Maintainer: meterflow maintainers <meterflow@example.invalid>
Installed-Size: $size
Depends: libc6, adduser
Section: misc
Priority: optional
Homepage: https://example.invalid/meterflow
Description: metering pipeline for public institutions
 Polls electricity, water, gas and heat meters (Modbus, DL/T 645, CJ/T 188),
 receives readings over MQTT and HTTP, keeps them in an embedded store,
 computes per-capita and per-area consumption against quotas, and feeds
 InfluxDB and Grafana.
CONTROL
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$stage/DEBIAN/$script"
done
mkdir -p "$out"
# DEB_COMPRESS / DEB_LEVEL: xz 6 by default (tests use gzip 1 on a debug build).
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" -z"${DEB_LEVEL:-6}" --build "$stage" "$out/meterflow_${version}_${arch}.deb" >/dev/null
echo "$out/meterflow_${version}_${arch}.deb"

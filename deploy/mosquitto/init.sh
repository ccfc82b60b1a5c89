#!/bin/sh
# Mosquitto's entry point in compose: at the first start, create the password
# file from the environment (MQTT_PASSWORD for meterflow, MQTT_GATEWAY_PASSWORD
# for the gateways); later starts keep it. The TLS certificate and key are
# copied from the read-only certs/ mount to the data volume, owned by the
# broker's user (it reads them after dropping root). Then run the broker.
# MOSQUITTO_PASSWD, MOSQUITTO_CONF, MOSQUITTO_CERTS and MOSQUITTO_TLS
# override the paths (tests, other hosts).
set -eu
pw="${MOSQUITTO_PASSWD:-/mosquitto/data/passwd}"
conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
certs="${MOSQUITTO_CERTS:-/mosquitto/certs}"
tls="${MOSQUITTO_TLS:-/mosquitto/data/tls}"
own() { chown "$@" 2>/dev/null || true; }
umask 077
if [ ! -s "$pw" ]; then
    : "${MQTT_PASSWORD:?set MQTT_PASSWORD (deploy/.env)}"
    : "${MQTT_GATEWAY_PASSWORD:?set MQTT_GATEWAY_PASSWORD (deploy/.env)}"
    mosquitto_passwd -c -b "$pw" meterflow "$MQTT_PASSWORD"
    mosquitto_passwd -b "$pw" gateway "$MQTT_GATEWAY_PASSWORD"
    echo "mosquitto: created $pw (accounts meterflow, gateway)"
fi
if [ -f "$certs/server.crt" ] && [ -f "$certs/server.key" ]; then
    mkdir -p "$tls"
    cp "$certs/server.crt" "$certs/server.key" "$tls/"
    own -R mosquitto:mosquitto "$tls"
else
    echo "mosquitto: no $certs/server.crt and server.key: the TLS listener cannot start (deploy/mosquitto/certs/README.md)" >&2
fi
own mosquitto:mosquitto "$(dirname "$pw")" "$pw"
exec mosquitto -c "$conf"

#!/bin/sh
# InfluxDB 2 runs this once, after its setup (docker-entrypoint-initdb.d):
# least-privilege v1 users on the bucket. meterflow only writes it, Grafana
# only reads it; the admin token stays with InfluxDB.
set -eu
bucket_id="$(influx bucket list --org "$DOCKER_INFLUXDB_INIT_ORG" \
    --name "$DOCKER_INFLUXDB_INIT_BUCKET" --hide-headers | cut -f1)"
influx v1 auth create --org "$DOCKER_INFLUXDB_INIT_ORG" \
    --username meterflow --password "$INFLUX_WRITE_PASSWORD" \
    --write-bucket "$bucket_id" --description "meterflow: write only"
influx v1 auth create --org "$DOCKER_INFLUXDB_INIT_ORG" \
    --username grafana --password "$INFLUX_READ_PASSWORD" \
    --read-bucket "$bucket_id" --description "Grafana: read only"

#!/usr/bin/env python3
"""Build the Grafana dashboards of meterflow (dashboards/*.json).

The JSON files are generated from this one description so that every panel
uses the same datasource, time zone and query conventions:

- datasource: the provisioned InfluxDB datasource, uid `meterflow-influxdb`
  (deploy/grafana/provisioning/datasources/influxdb.yaml);
- raw InfluxQL only, in the subset InfluxDB 1.8+, 2.x (v1 compatibility) and
  3.x all run: no SLIMIT/SOFFSET, SHOW DATABASES, SHOW SERIES, INTO, sample(),
  holt_winters(), integral();
- local days: GROUP BY time(1d) ... tz('<site zone>'); months and years come
  from the aggregator's own rollups (InfluxQL has no calendar-month bucket);
- template variables from SHOW TAG VALUES, multi-value safe: `=~ /^$var$/`.

Usage: python3 dashboards/build.py [--tz Asia/Shanghai] [--check]
  --check: exit 1 if a committed file differs from what this script builds.
"""

import argparse
import json
import pathlib
import sys

DS = {"type": "influxdb", "uid": "meterflow-influxdb"}
HERE = pathlib.Path(__file__).resolve().parent


class Board:
    def __init__(self, uid, title, description, tz):
        self.uid, self.title, self.description, self.tz = uid, title, description, tz
        self.panels, self.vars = [], []
        self.x = self.y = self.row_h = 0
        self.since = "now-7d"

    def var(self, name, label, query):
        self.vars.append({
            "type": "query",
            "name": name,
            "label": label,
            "datasource": DS,
            "query": query,
            "definition": query,
            "multi": True,
            "includeAll": True,
            "refresh": 1,
            "sort": 1,
        })

    def panel(self, kind, title, queries, w=12, h=8, unit=None, fmt="time_series",
              description=None, options=None, interval=None, defaults=None,
              overrides=None, links=None):
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        pid = len(self.panels) + 1
        targets = []
        for i, q in enumerate(queries):
            targets.append({
                "refId": chr(ord("A") + i),
                "datasource": DS,
                "query": q.replace("$tz", self.tz),
                "rawQuery": True,
                "resultFormat": fmt,
            })
        p = {
            "id": pid,
            "type": kind,
            "title": title,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": targets,
            "fieldConfig": {
                "defaults": {**({"unit": unit} if unit else {}), **(defaults or {})},
                "overrides": overrides or [],
            },
            "options": options or {},
        }
        if description:
            p["description"] = description
        if links:
            p["links"] = links
        if interval:
            p["interval"] = interval
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)

    def json(self):
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["meterflow"],
            "timezone": self.tz,
            "editable": True,
            "graphTooltip": 1,
            "time": {"from": self.since, "to": "now"},
            "refresh": "1m",
            "schemaVersion": 39,
            "version": 1,
            "panels": self.panels,
            "templating": {"list": self.vars},
            "annotations": {"list": []},
            "links": [{
                "title": "meterflow",
                "type": "dashboards",
                "tags": ["meterflow"],
                "icon": "external link",
                "tooltip": "",
                "asDropdown": True,
                "targetBlank": False,
                "includeVars": False,
                "keepTime": True,
            }],
        }


SITE_ELEC = "\"level\" = 'site' AND \"class\" = 'electricity' AND \"subitem\" = 'total'"
# Daily amounts are bars, not lines.
BARS = {"custom": {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1}}
# Against a quota: green below 90 %, orange to 100 %, red above.
QUOTA_STEPS = {"mode": "absolute", "steps": [
    {"color": "green", "value": None}, {"color": "orange", "value": 90}, {"color": "red", "value": 100}]}


def link(title, url):
    """A link in the full shape the dashboard schema wants."""
    return {"title": title, "type": "link", "url": url, "icon": "external link", "tooltip": "",
            "tags": [], "asDropdown": False, "targetBlank": False, "includeVars": False, "keepTime": True}


AGENCY_LINK = link("Agency drill-down: ${__data.fields.name}",
                   "/d/meterflow-agency?var-agency=${__data.fields.id}&${__url_time_range}")
YEAR = "time >= now() - 366d"
MONTH = "time >= now() - 31d"


def site(tz):
    b = Board("meterflow-site", "meterflow · Site overview",
              "Today, this month and this year against quota; per-capita and per-area by agency; year-on-year.", tz)
    b.panel("stat", "Today: site electricity",
            [f"SELECT sum(\"last\") FROM (SELECT last(\"value\") FROM \"rollup\" WHERE {SITE_ELEC} AND \"grain\" = 'day' AND $timeFilter GROUP BY \"shard\")"],
            w=6, h=5, unit="kwatth")
    b.panel("stat", "This month: site electricity",
            [f"SELECT sum(\"last\") FROM (SELECT last(\"value\") FROM \"rollup\" WHERE {SITE_ELEC} AND \"grain\" = 'month' AND {MONTH} GROUP BY \"shard\")"],
            w=6, h=5, unit="kwatth")
    b.panel("stat", "This year: comprehensive energy (kgce)",
            [f"SELECT last(\"energy_kgce\") FROM \"kpi\" WHERE \"scope\" = 'site' AND \"period\" = 'year' AND {YEAR}"],
            w=6, h=5, unit="none")
    b.panel("gauge", "Year to date against quota (per capita)",
            [f"SELECT last(\"quota_ratio_to_date\") * 100 FROM \"kpi\" WHERE \"scope\" = 'site' AND \"period\" = 'year' AND {YEAR}"],
            w=6, h=5, unit="percent", defaults={"min": 0, "max": 150, "thresholds": QUOTA_STEPS},
            description="Per-capita energy so far against the quota pro-rated to the elapsed share of the year (100 % = on quota).")
    b.panel("stat", "This year: CO₂ (t)",
            [f"SELECT last(\"co2_t\") FROM \"kpi\" WHERE \"scope\" = 'site' AND \"period\" = 'year' AND {YEAR}"],
            w=6, h=5, unit="none",
            description="Every carrier's CO₂ (grid electricity with the regional factor of the data year, fuels, heat); absent when a factor is missing.")
    b.panel("stat", "This year: energy cost (CNY)",
            [f"SELECT last(\"total_cny\") FROM \"cost\" WHERE \"scope\" = 'site' AND \"period\" = 'year' AND {YEAR}"],
            w=6, h=5, unit="none",
            description="Consumption × the tariff in force for each 15-minute bucket (electricity by time of use), water with its surcharge above the agencies' quotas; see [[tariff]].")
    b.panel("timeseries", "Daily electricity, site (local days)",
            [f"SELECT sum(\"value\") FROM \"rollup\" WHERE {SITE_ELEC} AND \"grain\" = '15m' AND $timeFilter GROUP BY time(1d) tz('$tz')"],
            w=18, h=8, unit="kwatth", options={"legend": {"showLegend": False}}, defaults=BARS)
    b.panel("table", "This year by agency: per capita and per m²",
            [f"SELECT last(\"name\") AS \"name\", last(\"per_capita_kgce\") AS \"kgce_per_person\", last(\"per_area_kgce\") AS \"kgce_per_m2\", "
             f"last(\"per_capita_water_m3\") AS \"water_m3_per_person\", last(\"co2_t\") AS \"co2_t\", last(\"quota_ratio_to_date\") AS \"quota_ratio\" "
             f"FROM \"kpi\" WHERE \"scope\" = 'agency' AND \"period\" = 'year' AND {YEAR} GROUP BY \"id\""],
            w=12, h=8, fmt="table", defaults={"links": [AGENCY_LINK]},
            description="Click an agency for its drill-down. Quota ratio: this year so far against the pro-rated quota (1 = on quota).")
    b.panel("bargauge", "Year-on-year, per-capita energy this month (%)",
            [f"SELECT last(\"yoy_per_capita_pct\") FROM \"kpi\" WHERE \"scope\" = 'agency' AND \"period\" = 'month' AND {MONTH} GROUP BY \"id\""],
            w=12, h=8, unit="percent",
            description="Change against the same calendar days last year: the days of this month that have data, 29 February left out. "
                        "Negative is a reduction. Absent when either side covers less than the site's completeness threshold "
                        "(default 95 % of 15-minute buckets measured or estimated); the API and the export give the reason.")
    return b


def agency(tz):
    b = Board("meterflow-agency", "meterflow · Agency drill-down",
              "One or several agencies: allocated consumption by class, per-capita and per-area figures, quota tracking.", tz)
    b.var("agency", "Agency", "SHOW TAG VALUES FROM \"kpi\" WITH KEY = \"id\" WHERE \"scope\" = 'agency'")
    a = "\"id\" =~ /^$agency$/"
    # One panel per unit: kWh, m³ and GJ never share an axis.
    links = [link("Meter detail", "/d/meterflow-meter?${__url_time_range}"),
             link("Site overview", "/d/meterflow-site?${__url_time_range}")]
    for title, classes, unit in [("Daily electricity (allocated), kWh", "electricity", "kwatth"),
                                 ("Daily water and gas (allocated), m³", "water|gas", "m3"),
                                 ("Daily heat (allocated), GJ", "heat|cooling", "none")]:
        b.panel("timeseries", title,
                [f"SELECT sum(\"value\") FROM \"rollup\" WHERE \"level\" = 'agency' AND {a} AND \"class\" =~ /^({classes})$/ AND \"subitem\" = 'total' AND \"grain\" = '15m' AND $timeFilter GROUP BY time(1d), \"id\", \"class\" tz('$tz')"],
                w=8, h=8, unit=unit, defaults=BARS, links=links)
    b.panel("stat", "Per-capita energy this year (kgce/person)",
            [f"SELECT last(\"per_capita_kgce\") FROM \"kpi\" WHERE \"scope\" = 'agency' AND {a} AND \"period\" = 'year' AND {YEAR} GROUP BY \"id\""],
            w=8, h=5)
    b.panel("stat", "Per-area energy this year (kgce/m²)",
            [f"SELECT last(\"per_area_kgce\") FROM \"kpi\" WHERE \"scope\" = 'agency' AND {a} AND \"period\" = 'year' AND {YEAR} GROUP BY \"id\""],
            w=8, h=5)
    b.panel("stat", "Water per person-day this month (L)",
            [f"SELECT last(\"water_l_per_person_day\") FROM \"kpi\" WHERE \"scope\" = 'agency' AND {a} AND \"period\" = 'month' AND {MONTH} GROUP BY \"id\""],
            w=8, h=5)
    b.panel("table", "Quota tracking this year",
            [f"SELECT last(\"name\") AS \"name\", last(\"quota_ratio_to_date\") AS \"to_date\", last(\"projected_ratio\") AS \"projected\", last(\"projection\") AS \"method\" "
             f"FROM \"kpi\" WHERE \"scope\" = 'agency' AND {a} AND \"period\" = 'year' AND {YEAR} GROUP BY \"id\""],
            w=12, h=6, fmt="table",
            description="To date: per-capita energy against the quota's 约束值 pro-rated to the days with data. Projected: the year end by "
                        "last year's shape (method last_year) where last year covers the same days and its whole year, by run-rate otherwise, "
                        "and not before 30 days with data. A running year is tracked, never graded.")
    b.panel("table", "Energy cost this year",
            [f"SELECT last(\"name\") AS \"name\", last(\"total_cny\") AS \"total_cny\", last(\"electricity_cny\") AS \"electricity_cny\", "
             f"last(\"water_cny\") AS \"water_cny\", last(\"water_surcharge_cny\") AS \"water_surcharge_cny\", last(\"peak_share_pct\") AS \"peak_share_pct\", "
             f"last(\"budget_cny\") AS \"budget_cny\", last(\"budget_projected_ratio\") AS \"budget_projected\" "
             f"FROM \"cost\" WHERE \"scope\" = 'agency' AND {a} AND \"period\" = 'year' AND {YEAR} GROUP BY \"id\""],
            w=12, h=6, fmt="table",
            description="Cost with the site's tariffs, allocated like the consumption. Peak share: electricity in 峰 and 尖峰 (the load-shifting figure). "
                        "Budget projected: the year-end cost against the agency's 能耗经费预算, projected like the quota.")
    b.panel("bargauge", "Electricity by time-of-use period this month (kWh)",
            [f"SELECT last(\"critical_kwh\") AS \"尖峰\", last(\"peak_kwh\") AS \"峰\", last(\"flat_kwh\") AS \"平\", last(\"valley_kwh\") AS \"谷\" "
             f"FROM \"cost\" WHERE \"scope\" = 'agency' AND {a} AND \"period\" = 'month' AND {MONTH} GROUP BY \"id\""],
            w=12, h=6, unit="kwatth")
    b.panel("timeseries", "Per-capita energy by month (kgce/person)",
            [f"SELECT \"per_capita_kgce\" FROM \"kpi\" WHERE \"scope\" = 'agency' AND {a} AND \"period\" = 'month' AND {YEAR} GROUP BY \"id\""],
            w=12, h=6)
    return b


def meter(tz):
    b = Board("meterflow-meter", "meterflow · Meter detail",
              "Raw readings, 15-minute consumption and its quality for one or several meters.", tz)
    b.var("meter", "Meter", "SHOW TAG VALUES FROM \"consumption\" WITH KEY = \"meter\"")
    m = "\"meter\" =~ /^$meter$/"
    b.panel("timeseries", "Readings",
            [f"SELECT mean(\"value\") FROM \"reading\" WHERE {m} AND $timeFilter GROUP BY time($__interval), \"meter\", \"quantity\" fill(none)"],
            w=24, h=8)
    b.panel("timeseries", "15-minute consumption",
            [f"SELECT sum(\"value\") FROM \"consumption\" WHERE {m} AND $timeFilter GROUP BY time($__interval), \"meter\" fill(none)"],
            w=12, h=8, interval="15m")
    b.panel("timeseries", "Coverage per day: measured and estimated seconds",
            [f"SELECT sum(\"measured_s\") AS \"measured\", sum(\"estimated_s\") AS \"estimated\" FROM \"consumption\" WHERE {m} AND $timeFilter GROUP BY time(1d) tz('$tz')"],
            w=12, h=8, unit="s")
    return b


def subitems(tz):
    b = Board("meterflow-subitems", "meterflow · Electricity sub-items",
              "Electricity by sub-item (分项: lighting and sockets, HVAC, power, special) per building.", tz)
    b.var("building", "Building",
          "SHOW TAG VALUES FROM \"rollup\" WITH KEY = \"id\" WHERE \"level\" = 'building' AND \"class\" = 'electricity' AND \"subitem\" != 'total'")
    w = "\"level\" = 'building' AND \"id\" =~ /^$building$/ AND \"class\" = 'electricity' AND \"subitem\" != 'total'"
    b.panel("timeseries", "Daily electricity by sub-item",
            [f"SELECT sum(\"value\") FROM \"rollup\" WHERE {w} AND \"grain\" = '15m' AND $timeFilter GROUP BY time(1d), \"subitem\" tz('$tz')"],
            w=16, h=9, unit="kwatth", defaults=BARS)
    b.panel("piechart", "This month by sub-item",
            [f"SELECT sum(\"value\") FROM \"rollup\" WHERE {w} AND \"grain\" = 'month' AND {MONTH} GROUP BY \"subitem\""],
            w=8, h=9, unit="kwatth")
    return b


def water(tz):
    b = Board("meterflow-water", "meterflow · Water and night flow",
              "Water per building and day, and each meter's lowest hourly flow per day: a leak keeps it above zero.", tz)
    b.panel("timeseries", "Daily water by building",
            [f"SELECT sum(\"value\") FROM \"rollup\" WHERE \"level\" = 'building' AND \"class\" = 'water' AND \"subitem\" = 'total' AND \"grain\" = '15m' AND $timeFilter GROUP BY time(1d), \"id\" tz('$tz')"],
            w=12, h=8, unit="m3", defaults=BARS)
    b.panel("timeseries", "Lowest hourly flow per day (leak indicator)",
            ["SELECT min(\"hourly\") FROM (SELECT sum(\"value\") AS \"hourly\" FROM \"consumption\" WHERE \"class\" = 'water' AND $timeFilter GROUP BY time(1h), \"meter\") "
             "WHERE $timeFilter GROUP BY time(1d), \"meter\" tz('$tz')"],
            w=12, h=8, unit="m3",
            description="Minimum over the day's hours of the hourly volume; above zero every night means water never stops (leak).")
    b.panel("table", "Water per person this year",
            [f"SELECT last(\"name\") AS \"name\", last(\"per_capita_water_m3\") AS \"m3_per_person\", last(\"water_l_per_person_day\") AS \"l_per_person_day\" FROM \"kpi\" WHERE \"scope\" = 'agency' AND \"period\" = 'year' AND {YEAR} GROUP BY \"id\""],
            w=24, h=6, fmt="table")
    return b


def quality(tz):
    b = Board("meterflow-quality", "meterflow · Data quality",
              "Completeness per agency, estimated share, and the normaliser's anomalies.", tz)
    b.panel("table", "Completeness this month by agency (%)",
            [f"SELECT last(\"name\") AS \"name\", last(\"completeness_pct\") AS \"completeness_pct\", last(\"coverage_pct\") AS \"coverage_pct\" FROM \"kpi\" WHERE \"scope\" = 'agency' AND \"period\" = 'month' AND {MONTH} GROUP BY \"id\""],
            w=8, h=8, fmt="table",
            description="completeness: measured buckets of the expected; coverage: measured or estimated. Year-on-year, grades and "
                        "reductions need coverage at the site's threshold (default 95 %).")
    b.panel("timeseries", "Measured and estimated coverage per day (all meters)",
            ["SELECT sum(\"measured_s\") AS \"measured\", sum(\"estimated_s\") AS \"estimated\" FROM \"consumption\" WHERE $timeFilter GROUP BY time(1d) tz('$tz')"],
            w=16, h=8, unit="s")
    b.panel("bargauge", "Anomalies by kind",
            ["SELECT sum(\"count\") FROM \"anomaly\" WHERE $timeFilter GROUP BY \"kind\""],
            w=8, h=8)
    b.panel("table", "Anomalies",
            ["SELECT \"detail\" FROM \"anomaly\" WHERE $timeFilter GROUP BY \"meter\", \"kind\""],
            w=16, h=8, fmt="table")
    return b


def alerts(tz):
    b = Board("meterflow-alerts", "meterflow · Alerts",
              "Alert events (fired, resolved, acknowledged) and what is firing now.", tz)
    b.panel("stat", "Firing now",
            [f"SELECT sum(\"f\") FROM (SELECT last(\"firing\") AS \"f\" FROM \"alert\" WHERE {YEAR} GROUP BY \"rule\", \"target\")"],
            w=6, h=6)
    b.panel("timeseries", "Events per day by kind",
            ["SELECT count(\"event\") FROM \"alert\" WHERE $timeFilter GROUP BY time(1d), \"kind\" tz('$tz')"],
            w=18, h=6)
    b.panel("table", "Alert events",
            ["SELECT \"event\", \"value\", \"threshold\", \"message\" FROM \"alert\" WHERE $timeFilter GROUP BY \"rule\", \"target\", \"severity\""],
            w=24, h=10, fmt="table")
    return b


def pipeline(tz):
    b = Board("meterflow-pipeline", "meterflow · Pipeline health",
              "Ingest rate, Modbus bus errors, and the InfluxDB outbox (depth, age, delivered, dead).", tz)
    b.since = "now-1h"
    b.panel("timeseries", "Readings stored per second",
            ["SELECT non_negative_derivative(last(\"stored\"), 1s) FROM \"pipeline\" WHERE $timeFilter GROUP BY time($__interval), \"instance\" fill(none)"],
            w=12, h=7, unit="reqps")
    b.panel("timeseries", "Modbus bus error rate",
            ["SELECT mean(\"error_rate\") * 100 FROM \"bus_health\" WHERE $timeFilter GROUP BY time($__interval), \"bus\" fill(none)"],
            w=12, h=7, unit="percent", interval="1m")
    b.panel("timeseries", "Outbox depth (points waiting for InfluxDB)",
            ["SELECT last(\"outbox_points\") FROM \"pipeline\" WHERE $timeFilter GROUP BY time($__interval), \"instance\" fill(none)"],
            w=8, h=7, interval="1m")
    b.panel("timeseries", "Oldest waiting point",
            ["SELECT max(\"outbox_age_s\") FROM \"pipeline\" WHERE $timeFilter GROUP BY time($__interval), \"instance\" fill(none)"],
            w=8, h=7, unit="s", interval="1m")
    b.panel("stat", "Delivered and dead points",
            ["SELECT last(\"sink_delivered\") AS \"delivered\", last(\"sink_dead\") AS \"dead\" FROM \"pipeline\" WHERE $timeFilter GROUP BY \"instance\""],
            w=8, h=7)
    return b


def waste(tz):
    b = Board("meterflow-waste", "meterflow · Waste sorting",
              "The waste-sorting ledger: weighed per category, 回收利用率 and the one-vote veto per agency.", tz)
    b.panel("timeseries", "Weighed per day by category",
            ["SELECT sum(\"kg\") FROM \"waste\" WHERE $timeFilter GROUP BY time(1d), \"category\" tz('$tz')"],
            w=16, h=8, unit="masskg", defaults=BARS)
    b.panel("piechart", "Recovered or not (recyclables and kitchen waste to recycling, composting, digestion)",
            ["SELECT sum(\"kg\") FROM \"waste\" WHERE $timeFilter GROUP BY \"recovered\""],
            w=8, h=8, unit="masskg")
    b.panel("table", "This year by agency: 回收利用率, points, one-vote veto",
            [f"SELECT last(\"recovery_rate_pct\") AS \"recovery_rate_pct\", last(\"total_kg\") AS \"total_kg\", last(\"records\") AS \"records\", last(\"veto\") AS \"veto\" FROM \"waste_year\" WHERE {YEAR} GROUP BY \"agency\""],
            w=24, h=8, fmt="table",
            description="回收利用率 = (recyclables + kitchen waste recovered) / all waste × 100, target ≥ 35 %. An agency without any record in the year fails the waste requirement (veto).")
    return b


def vehicles(tz):
    b = Board("meterflow-vehicles", "meterflow · Official vehicles",
              "The vehicle ledger: km, fuel, L/100 km, running cost by category and purpose, maintenance due and odometer anomalies, this year.", tz)
    b.var("agency", "Agency", "SHOW TAG VALUES FROM \"vehicle_year\" WITH KEY = \"agency\"")
    sel = "\"agency\" =~ /^$agency$/"
    b.panel("table", "This year by vehicle",
            [f"SELECT last(\"km\") AS \"km\", last(\"litres\") AS \"litres\", last(\"l_per_100km\") AS \"l_per_100km\", "
             f"last(\"fuel_cny\") AS \"fuel_cny\", last(\"maintenance_cny\") AS \"maintenance_cny\", last(\"insurance_cny\") AS \"insurance_cny\", "
             f"last(\"toll_cny\") AS \"toll_cny\", last(\"total_cny\") AS \"total_cny\", last(\"odometer_km\") AS \"odometer_km\", "
             f"last(\"maintenance_due\") AS \"maintenance_due\", last(\"anomalies\") AS \"anomalies\" "
             f"FROM \"vehicle_year\" WHERE {sel} AND {YEAR} GROUP BY \"agency\", \"plate\", \"purpose\", \"fuel\""],
            w=24, h=9, fmt="table",
            description="Per vehicle for the calendar year: km from trip odometers, litres filled, L/100 km, running cost (CNY) by category, maintenance kinds due (routine, service, tyres) and odometer anomalies (a trip ending below its start, an odometer going back).")
    b.panel("bargauge", "L/100 km this year",
            [f"SELECT last(\"l_per_100km\") FROM \"vehicle_year\" WHERE {sel} AND {YEAR} GROUP BY \"plate\""],
            w=12, h=8, unit="none")
    b.panel("bargauge", "Running cost this year by vehicle (CNY)",
            [f"SELECT last(\"total_cny\") FROM \"vehicle_year\" WHERE {sel} AND {YEAR} GROUP BY \"purpose\", \"plate\""],
            w=12, h=8, unit="currencyCNY",
            description="Grouped by purpose (enforcement 执法执勤, leadership 领导保障, reception 调研接待, general 一般公务).")
    b.panel("stat", "Maintenance due now (vehicles)",
            [f"SELECT last(\"maintenance_due\") FROM \"vehicle_year\" WHERE {sel} AND {YEAR} GROUP BY \"plate\""],
            w=12, h=5, unit="none",
            description="Per vehicle: how many kinds of maintenance are due (0 = none).")
    b.panel("stat", "Odometer anomalies this year",
            [f"SELECT last(\"anomalies\") FROM \"vehicle_year\" WHERE {sel} AND {YEAR} GROUP BY \"plate\""],
            w=12, h=5, unit="none")
    return b


def assets(tz):
    b = Board("meterflow-assets", "meterflow · Fixed assets",
              "The asset ledger: assets in use, original value, straight-line net book value and idle assets per agency.", tz)
    b.since = "now-30d"
    b.var("agency", "Agency", "SHOW TAG VALUES FROM \"asset_register\" WITH KEY = \"agency\"")
    sel = "\"agency\" =~ /^$agency$/"
    b.panel("table", "Register by agency (latest day)",
            [f"SELECT last(\"assets\") AS \"assets\", last(\"value_cny\") AS \"value_cny\", last(\"net_book_value_cny\") AS \"net_book_value_cny\", last(\"idle\") AS \"idle\" "
             f"FROM \"asset_register\" WHERE {sel} AND $timeFilter GROUP BY \"agency\""],
            w=24, h=7, fmt="table",
            description="Net book value: straight-line by month from the acquisition month, no salvage value (政府会计准则). Idle: no scan or lifecycle event for 180 days.")
    b.panel("timeseries", "Net book value by agency (CNY)",
            [f"SELECT last(\"net_book_value_cny\") FROM \"asset_register\" WHERE {sel} AND $timeFilter GROUP BY time(1d), \"agency\" tz('$tz')"],
            w=12, h=8, unit="currencyCNY")
    b.panel("timeseries", "Idle assets by agency",
            [f"SELECT last(\"idle\") FROM \"asset_register\" WHERE {sel} AND $timeFilter GROUP BY time(1d), \"agency\" tz('$tz')"],
            w=12, h=8, unit="none")
    return b


def space(tz):
    b = Board("meterflow-space", "meterflow · Office space",
              "The office-space ledger: area per person against the 2014 standard, 超标 and idle rooms, 闲置率 per agency.", tz)
    b.since = "now-30d"
    b.var("agency", "Agency", "SHOW TAG VALUES FROM \"office_space\" WITH KEY = \"agency\"")
    sel = "\"agency\" =~ /^$agency$/"
    b.panel("table", "By agency (latest day)",
            [f"SELECT last(\"persons\") AS \"persons\", last(\"rooms\") AS \"rooms\", last(\"office_m2\") AS \"office_m2\", last(\"occupants\") AS \"occupants\", "
             f"last(\"m2_per_person\") AS \"m2_per_person\", last(\"standard_m2\") AS \"standard_m2\", last(\"over_standard\") AS \"over_standard\", "
             f"last(\"over_standard_rooms\") AS \"over_standard_rooms\", last(\"idle_rooms\") AS \"idle_rooms\", last(\"idle_rate_pct\") AS \"idle_rate_pct\" "
             f"FROM \"office_space\" WHERE {sel} AND $timeFilter GROUP BY \"agency\""],
            w=24, h=7, fmt="table",
            description="Office m² per occupant against the sum of their ranks' standard areas (2014 standard; 超标 when above). Idle (闲置): an allocated office room with nobody in it. 闲置率 = idle usable area / usable area of the agency's rooms.")
    b.panel("timeseries", "闲置率 by agency (%)",
            [f"SELECT last(\"idle_rate_pct\") FROM \"office_space\" WHERE {sel} AND $timeFilter GROUP BY time(1d), \"agency\" tz('$tz')"],
            w=12, h=8, unit="percent")
    b.panel("timeseries", "Office m² per person by agency",
            [f"SELECT last(\"m2_per_person\") FROM \"office_space\" WHERE {sel} AND $timeFilter GROUP BY time(1d), \"agency\" tz('$tz')"],
            w=12, h=8, unit="areaM2")
    return b


BOARDS = [site, agency, meter, subitems, water, quality, alerts, pipeline, waste, vehicles, assets, space]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tz", default="Asia/Shanghai", help="the site's time zone (IANA)")
    ap.add_argument("--check", action="store_true", help="compare with the committed files")
    ap.add_argument("--out", default=str(HERE), help="output directory")
    args = ap.parse_args()
    stale = []
    for make in BOARDS:
        board = make(args.tz)
        text = json.dumps(board.json(), ensure_ascii=False, indent=2) + "\n"
        path = pathlib.Path(args.out) / f"{make.__name__}.json"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale (run python3 dashboards/build.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

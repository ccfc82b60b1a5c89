#!/usr/bin/env python3
"""The clerks' and an agency's pages driven like a person would, in headless
Chromium through Selenium and Debian's chromedriver, against a running
`meterflow run`.

    clerk.py BASE_URL SHOTS_DIR VEHICLE_CLERK WASTE_CLERK AGENCY_FIN TAX_ENTRY_PATH MANAGER

Prints one JSON line of what it saw (entries recorded, report rows, the
pages it saved as screenshots) for the Rust test to check against the
store; exits non-zero with the reason on the first thing that is wrong.
"""

import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, SHOTS, VCLERK, CLERK, FIN, TAX_ENTRY, MANAGER = sys.argv[1:8]
SIZES = {"desktop": (1400, 900), "phone": (390, 844)}
CJK = re.compile(r"[\u3400-\u9fff]")
# Labels that are the same in Chinese pages: the language switch, units,
# file formats, the product's name.
SAME_IN_ZH = {"English", "CSV", "xlsx", "meterflow", "→", "←", "km", "kg", "EPC"}

seen = {"shots": [], "untranslated": []}


def fail(why):
    print(json.dumps({"error": why, **seen}, ensure_ascii=False))
    sys.exit(1)


def check(cond, why):
    if not cond:
        fail(why)


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--lang=zh-CN", "--window-size=1400,900"):
    options.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(60)


def click_and_wait(el):
    """Click what submits a form and wait until the next page has replaced
    this one and finished loading (the old page is marked first; asking
    while the browser swaps documents may fail, and is asked again)."""
    driver.execute_script("window.__leaving = true")
    el.click()

    def arrived(d):
        try:
            return d.execute_script("return !window.__leaving && document.readyState === 'complete'")
        except WebDriverException:
            return False

    WebDriverWait(driver, 20).until(arrived)


def go(path):
    driver.get(BASE + path)


def shot(name):
    """The page at both sizes, and its labels checked for English left in a
    Chinese page."""
    for size, (w, h) in SIZES.items():
        driver.set_window_size(w, h)
        path = os.path.join(SHOTS, f"{name}-{size}.png")
        driver.save_screenshot(path)
        seen["shots"].append(path)
    driver.set_window_size(*SIZES["desktop"])
    if driver.find_element(By.TAG_NAME, "html").get_attribute("lang") != "zh-CN":
        return
    for el in driver.find_elements(By.CSS_SELECTOR,
                                   "h1, h2, th, button, label > span:first-child, header a, nav a, p.muted"):
        text = el.text.strip()
        if text and not CJK.search(text) and text not in SAME_IN_ZH and not re.fullmatch(r"[\d\s./:()%-]+", text):
            seen["untranslated"].append(f"{name}: {text}")


def sign_in(token):
    go("/login")
    shot("login")
    driver.find_element(By.NAME, "token").send_keys(token)
    click_and_wait(driver.find_element(By.CSS_SELECTOR, "main button[type=submit]"))


def sign_out():
    click_and_wait(driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button"))
    check("/login" in driver.current_url, f"signed out to the sign-in page, at {driver.current_url}")


def fill(name, value):
    el = driver.find_element(By.CSS_SELECTOR, f"form.entry [name='{name}']")
    if el.tag_name == "select":
        Select(el).select_by_visible_text(value)
    elif el.get_attribute("type") in ("date", "datetime-local"):
        # Date pickers take their value as the browser's own widget would set it.
        driver.execute_script("arguments[0].value = arguments[1]", el, value)
    else:
        el.clear()
        el.send_keys(value)


def save():
    click_and_wait(driver.find_element(By.CSS_SELECTOR, "form.entry button[type=submit]"))


def rows(table="entries"):
    return driver.find_elements(By.CSS_SELECTOR, f"#{table} tr[data-id]")


def page_errors():
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".err")]


def status_text():
    found = driver.find_elements(By.CSS_SELECTOR, "p.ok")
    return found[0].text if found else ""


try:
    # The vehicle clerk lands on their ledger, registers a car, records a trip.
    sign_in(VCLERK)
    check(driver.current_url.endswith("/ledgers/vehicles"), f"the clerk lands on the ledger: {driver.current_url}")
    menu = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "header a")]
    check("垃圾分类" not in menu and "公务用车" in menu, f"the menu has the clerk's ledger only: {menu}")
    shot("vehicles")
    go("/ledgers/vehicles/vehicles")
    fill("time", "2026-01-05")
    fill("plate", "京A·12345")
    fill("agency", "市财政局")
    fill("fuel", "汽油")
    fill("purpose", "一般公务")
    fill("odometer_km", "1000")
    save()
    check("已记录" in status_text(), f"the vehicle is recorded: {page_errors()}")
    go("/ledgers/vehicles/trips")
    fill("time", "2026-11-30T08:30")
    fill("plate", "京A·12345")
    fill("start_km", "1000")
    fill("end_km", "1,042")
    save()
    check("已记录" in status_text(), f"the trip is recorded: {page_errors()}")
    trip_rows = rows()
    check(len(trip_rows) == 1 and "1042" in trip_rows[0].text, f"the trip is listed: {[r.text for r in trip_rows]}")
    seen["trip_id"] = trip_rows[0].get_attribute("data-id")
    shot("trips")
    # An odometer that runs backwards is refused, with its reason at the field.
    fill("time", "2026-12-01T09:00")
    fill("plate", "京A·12345")
    fill("start_km", "1100")
    fill("end_km", "1050")
    save()
    errors = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "form.entry .err")]
    check(any("收车里程 1050 低于出车里程 1100" in e for e in errors), f"the bad odometer is named: {errors}")
    check(len(rows()) == 1, "the refused trip is not recorded")
    check(driver.find_element(By.NAME, "start_km").get_attribute("value") == "1100",
          "the form keeps what was typed")
    shot("trip-refused")
    # An odometer below one read before would become an anomaly: the form
    # asks for confirmation first, and records nothing until it has it.
    fill("time", "2026-12-01T09:00")
    fill("plate", "京A·12345")
    fill("start_km", "1030")
    fill("end_km", "1050")
    save()
    warns = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "form.entry .warn")]
    check(any("里程表倒退" in w and "1042" in w for w in warns), f"the warning names the earlier reading: {warns}")
    check(len(rows()) == 1, "not recorded before the confirmation")
    shot("trip-confirm")
    driver.find_element(By.CSS_SELECTOR, "form.entry input[name=confirm]").click()
    save()
    check("已记录" in status_text(), f"recorded once confirmed: {page_errors()}")
    check(len(rows()) == 2, "the confirmed trip is listed")
    # The trip's page: history, and a void with its reason.
    go(f"/ledgers/vehicles/trips/{seen['trip_id']}")
    shot("trip-entry")
    hist = driver.find_elements(By.CSS_SELECTOR, "#history tr")
    check(len(hist) == 2, f"one version in the history: {[h.text for h in hist]}")
    sign_out()

    # The waste clerk weighs in kitchen waste typed as people write it.
    sign_in(CLERK)
    go("/ledgers/waste/weigh-ins")
    before = len(rows())
    fill("time", "2026-12-01T10:00")
    fill("agency", "市财政局")
    fill("point", "一号楼东侧")
    fill("category", "厨余垃圾")
    fill("kg", "2.0")
    fill("destination", "堆肥")
    save()
    check("已记录" in status_text(), f"the weigh-in is recorded: {page_errors()}")
    check(len(rows()) == before + 1 and "厨余垃圾" in rows()[0].text, "the weigh-in is listed, in Chinese")
    shot("weigh-ins")

    # An xlsx with two bad rows: the report names them; nothing is recorded
    # until the clerk confirms, then the good rows are.
    from openpyxl import Workbook
    book = Workbook()
    sheet = book.active
    sheet.append(["称重时间", "单位", "投放点", "类别", "重量(kg)", "去向"])
    sheet.append(["2026-11-20 09:00", "fin", "北门", "可回收物", 3.5, "回收利用"])
    sheet.append(["2026-11-21 09:00", "市财政局", "北门", "不存在的类别", 1, "回收利用"])
    sheet.append(["2026/11/22 9:00", "fin", "北门", "其他垃圾", "4.25", "焚烧"])
    sheet.append(["2026-11-23 09:00", "fin", "北门", "有害垃圾", "很多", "无害化处理"])
    sheet.append(["2026年11月24日", "市财政局", "北门", "厨余垃圾", 6, "堆肥"])
    xlsx = os.path.join(tempfile.mkdtemp(), "称重.xlsx")
    book.save(xlsx)
    count = len(rows())
    driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(xlsx)
    click_and_wait(driver.find_element(By.CSS_SELECTOR, "form[enctype] button[type=submit]"))
    report = {r.get_attribute("data-row"): r.text for r in driver.find_elements(By.CSS_SELECTOR, "#report tr[data-row]")}
    seen["report"] = report
    check(sorted(report) == ["3", "5"], f"the report names sheet rows 3 and 5: {report}")
    check("类别" in report["3"] and "重量" in report["5"], f"each bad row names its field: {report}")
    shot("upload-report")
    go("/ledgers/waste/weigh-ins")
    check(len(rows()) == count, "nothing recorded before the confirmation")
    driver.back()
    click_and_wait(driver.find_element(By.ID, "confirm"))
    check("已导入条数：3" in status_text(), f"three rows recorded: {status_text()}")
    check(len(rows()) == count + 3, "the three good rows are listed")

    # A form posted without the session's CSRF token is refused, with the
    # session cookie of this very browser.
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    body = urllib.parse.urlencode({"time": "2026-12-01 11:00", "agency": "fin", "point": "x",
                                   "category": "kitchen", "kg": "1", "destination": "composting"}).encode()
    req = urllib.request.Request(BASE + "/ledgers/waste/weigh-ins", data=body, method="POST",
                                 headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    try:
        urllib.request.urlopen(req)
        fail("a post without the CSRF token was accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 403, f"CSRF-less post: {e.code}")
    go("/ledgers/waste/weigh-ins")
    check(len(rows()) == count + 3, "the CSRF-less post recorded nothing")
    seen["weigh_ins_listed"] = len(rows())
    # A clerk cannot write another ledger, whatever the URL.
    go("/ledgers/vehicles/trips")
    check("无权访问" in driver.title or "不属于" in driver.page_source, "the waste clerk may not open the vehicles ledger")
    sign_out()

    # An agency: its own entries only, no overview, another agency's entry
    # refused by URL.
    sign_in(FIN)
    check(driver.current_url.endswith("/ledgers"), f"an agency lands on the ledgers: {driver.current_url}")
    menu = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "header a")]
    check("能耗概览" not in menu, f"no overview in an agency's menu: {menu}")
    go("/ledgers/waste/weigh-ins")
    listed = [r.text for r in rows()]
    check(listed and all("市财政局" in t for t in listed), f"only the agency's own entries: {listed}")
    check(not driver.find_elements(By.CSS_SELECTOR, "form.entry"), "no entry form for an agency")
    shot("agency-weigh-ins")
    go(TAX_ENTRY)
    check("无权访问" in driver.title, f"another agency's entry is refused: {driver.title}")
    seen["agency_refused"] = driver.find_element(By.CSS_SELECTOR, "p.err").text
    go("/ledgers/space")
    shot("space")
    go("/agencies/fin")
    check(driver.find_elements(By.ID, "figures"), "the agency's own page has its figures")
    shot("agency-own")
    go("/agencies/tax")
    check("无权访问" in driver.title, f"another agency's page is refused: {driver.title}")
    sign_out()

    # The manager: the overview, a period chosen, down to an agency and one
    # of its meters, a building, the assessment.
    sign_in(MANAGER)
    check(driver.current_url.rstrip("/") == BASE, f"a manager lands on the overview: {driver.current_url}")
    shot("overview")
    driver.find_element(By.CSS_SELECTOR, "form.picker input[value=week]").click()
    click_and_wait(driver.find_element(By.CSS_SELECTOR, "form.picker button"))
    check("period=week" in driver.current_url, f"the week is chosen: {driver.current_url}")
    week_bars = driver.find_elements(By.CSS_SELECTOR, "#chart-electricity rect[data-key]")
    check(len(week_bars) == 7, f"seven days in a week: {len(week_bars)}")
    shot("overview-week")
    click_and_wait(driver.find_element(By.CSS_SELECTOR, "#agencies a"))
    check("/agencies/" in driver.current_url, f"down to an agency: {driver.current_url}")
    check(driver.find_elements(By.CSS_SELECTOR, "#chart-electricity rect.bar"), "the agency's chart has bars")
    # With script, each chart offers the interactive view (uPlot, vendored),
    # drawn from the same bars when opened.
    summaries = driver.find_elements(By.CSS_SELECTOR, "figure.chart details.interactive summary")
    check(summaries, "the charts offer an interactive view")
    summaries[0].click()
    WebDriverWait(driver, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "figure.chart details.interactive .uplot canvas"))
    seen["interactive_points"] = driver.execute_script(
        "return document.querySelectorAll('svg.bars')[0].querySelectorAll('rect[data-value]').length")
    shot("agency")
    click_and_wait(driver.find_element(By.CSS_SELECTOR, "#meters a"))
    check("/meters/" in driver.current_url, f"down to a meter: {driver.current_url}")
    qualities = {r.get_attribute("data-quality") for r in driver.find_elements(By.CSS_SELECTOR, "#chart-meter rect[data-quality]")}
    seen["meter_qualities"] = sorted(qualities)
    check(qualities & {"measured", "mixed", "estimated"}, f"the meter's bars show their quality: {qualities}")
    shot("meter")
    buildings = driver.find_elements(By.CSS_SELECTOR, "main p a[href^='/buildings/']")
    if buildings:
        click_and_wait(buildings[0])
        shot("building")
    go("/assessment")
    rows_a = driver.find_elements(By.CSS_SELECTOR, "#assessment tr[data-scope]")
    seen["assessment_rows"] = len(rows_a)
    check(rows_a, "the assessment preview has rows")
    check([a.text for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")] == ["xlsx", "csv", "parquet"],
          "the three downloads are offered")
    shot("assessment")
    sign_out()
finally:
    driver.quit()

print(json.dumps(seen, ensure_ascii=False))

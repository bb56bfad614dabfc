"""The HTML leaderboard in a real headless browser (Debian's chromium, driven by Playwright's
protocol client; no browser download): no console errors, every method shown, sorting works,
and a screenshot that is not blank."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from ctta.report.leaderboard import write_leaderboards

FAKE = Path(__file__).parent / "data" / "fake_store"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:  # a failure, not a skip: `make test` installs it
        pytest.fail(
            "chromium is not installed (make test installs Debian's chromium: apt-get install chromium)"
        )
    return path


def test_html_leaderboard_in_a_headless_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    page_file = write_leaderboards(FAKE, tmp_path)[1]
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            assert errors == []
            text = page.inner_text("body")
            for method in ("finetune", "simplecil", "source", "tent"):
                assert method in text

            table = page.locator("table.leaderboard").first
            header = table.locator("thead th", has_text="last acc")
            column = header.evaluate("th => th.cellIndex")

            def column_values():
                cells = table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()
                return [float(c.split("[")[0]) for c in cells]

            header.click()
            ascending = column_values()
            header.click()
            descending = column_values()
            assert ascending == sorted(ascending) and descending == sorted(ascending, reverse=True)
            assert ascending != descending  # the fake store's two methods differ

            shot = tmp_path / "leaderboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] > 200 and np.std(pixels[..., :3]) > 0.05  # not a blank page

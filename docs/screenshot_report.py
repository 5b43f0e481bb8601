"""Renders an evaluation's `report.html` to a PNG with headless Chromium,
for the README (not run in CI).

    keras-transfer evaluate runs/photos photos/
    python docs/screenshot_report.py runs/photos/evaluation/report.html docs/report.png

Needs Chromium (Debian: `apt-get install chromium`). The page loads nothing
from the network: its images are data URIs.
"""

import argparse
import pathlib
import shutil
import subprocess


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=pathlib.Path)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--size", default="1100,2400", help="window width,height in pixels")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("skipped: no chromium on PATH (Debian: apt-get install chromium)")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={args.size}",
            f"--screenshot={args.out.resolve()}",
            args.report.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

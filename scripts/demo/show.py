"""What scripts/demo.sh prints of a finished round (standard library only).

  show.py verdicts STATUS_URL          every measured submission's verdict, explained
  show.py query PROMETHEUS_URL QUERY…  instant queries against a Prometheus
  show.py pages STATUS_URL DIR NAME=PATH…  the pages in headless Chromium at 1280 px:
                                         content width and a screenshot each
"""
import json
import sys
import urllib.parse
import urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def verdicts(status):
    for sub in get(f"{status}/submissions"):
        if not sub.get("round_id"):
            continue
        s = get(f"{status}/submissions/{sub['id']}")
        for r in s["rounds"][:1]:
            rep = r.get("report") or {}
            print(f"{s['id']}: {s['state']} {s.get('reason') or ''} "
                  f"(round {r['round_id']}, log {r['log']})")
            sp = rep.get("speed")
            if sp:
                print(f"  TTFT {sp['contestant']['ttft_s']:.3f} s vs baseline "
                      f"{sp['baseline']['ttft_s']:.3f} s ({sp['ttft_improvement']:+.1%}), "
                      f"throughput {sp['contestant']['tps']:.1f} vs {sp['baseline']['tps']:.1f} "
                      f"tok/s ({sp['tps_improvement']:+.1%}), score {sp['score']:.4f}")
            g = rep.get("gate")
            if g:
                print(f"  gate {'passed' if g['passed'] else 'FAILED'}: pass fraction "
                      f"{g['pass_fraction']:.3f} (needs {g['min_pass_fraction']}), {g['failed']} of "
                      f"{g['requests']} failed, by check {g['by_check']}")
                for f in g["first_failures"][:2]:
                    print(f"    prompt #{f['prompt_index']}: {f['check']} at token "
                          f"{f.get('position')}: baseline wrote {f.get('expected')!r}, "
                          f"it wrote {f.get('got')!r}")
            t = rep.get("timings")
            if t:
                print(f"  pull {t['pull_s']:.2f} s, start {t['start_s']:.2f} s, ready "
                      f"{t['ready_s']:.2f} s, workload {t['workload_s']:.2f} s, teardown "
                      f"{t['teardown_s']:.2f} s, {t['gpu_seconds']:.0f} GPU-s")


def query(prometheus, queries):
    for q in queries:
        url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        print(f"prometheus> {q}")
        for r in get(url)["data"]["result"]:
            labels = {k: v for k, v in r["metric"].items() if k not in ("instance", "job")}
            print(f"  {labels} = {r['value'][1]}")


def pages(status, outdir, named_paths):
    """Each NAME=PATH in headless Chromium 1280 px wide (chromedriver over WebDriver): the
    content width against the window's, and a screenshot."""
    import os
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    driver = subprocess.Popen(["chromedriver", f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def call(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)["value"]

    try:
        for _ in range(100):
            try:
                if call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        profile = tempfile.mkdtemp()
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                "--window-size=1280,1600", f"--user-data-dir={profile}"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium", "args": args}}}}
        session = call("POST", "/session", caps)["sessionId"]
        os.makedirs(outdir, exist_ok=True)
        try:
            shoot(call, session, status, outdir, named_paths)
        finally:
            call("DELETE", f"/session/{session}")
            shutil.rmtree(profile, ignore_errors=True)
    finally:
        driver.kill()
        driver.wait()


def shoot(call, session, status, outdir, named_paths):
    import base64
    import os

    for item in named_paths:
        name, path = item.split("=", 1)
        call("POST", f"/session/{session}/url", {"url": status + path})
        content, window = call("POST", f"/session/{session}/execute/sync", {
            "script": "return [document.documentElement.scrollWidth, "
                      "document.documentElement.clientWidth];", "args": []})
        png = os.path.join(outdir, f"{name}.png")
        with open(png, "wb") as f:
            f.write(base64.b64decode(call("GET", f"/session/{session}/screenshot")))
        verdict = "fits" if content <= window else "OVERFLOWS"
        print(f"{path}: {content} px of content in a {window} px window ({verdict}); {png}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["verdicts"]:
        verdicts(sys.argv[2])
    elif sys.argv[1:2] == ["query"]:
        query(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["pages"]:
        pages(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)

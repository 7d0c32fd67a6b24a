"""The HTML and DOT views of a report, on Hugging Face ConvNeXt-Tiny (default config, random weights).

The browser test opens the page in headless Chromium (Debian's `chromium`) and reads the DOM after
the page's script ran. Outside CI it is skipped when no Chromium is installed; in CI (CI=true,
.ci/run installs it) a missing browser fails the test.
"""
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
import torch

import fxminimize
from fxminimize.testing.zoo import induce_dead_channels

PW1 = "encoder.stages.2.layers.4.pwconv1"
KEPT_CHANNEL = 17          # 17 % 3 != 0: kept
REMOVED_CHANNEL = 18       # pruned below


@pytest.fixture(scope="module")
def convnext():
    from transformers import ConvNextConfig, ConvNextModel

    torch.manual_seed(0)
    m = ConvNextModel(ConvNextConfig()).eval()  # ConvNeXt-Tiny: depths 3,3,9,3, widths 96..768
    induce_dead_channels(m, PW1, list(range(0, 1536, 3)))
    induce_dead_channels(m, "encoder.stages.1.layers.1.pwconv1", list(range(0, 768, 2)), fold_bias=True)
    return fxminimize.minimize(m, (torch.randn(1, 3, 64, 64),))


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("CI: chromium is not installed (.ci/run installs it with apt-get)")
    pytest.skip("no chromium installed (apt-get install chromium); runs in CI")


class _DOM(HTMLParser):
    """Collects what the test checks: group rows, graph nodes and runs, the explanation."""

    def __init__(self):
        super().__init__()
        self.group_rows, self.nodes, self.runs = [], [], 0
        self.head, self.steps, self.texts = None, [], {}
        self._cap = None
        self._buf = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "tr" and "group-row" in cls:
            self.group_rows.append(int(a["data-group"]))
        if tag == "g" and "node" in cls:
            self.nodes.append(a["data-node"])
        if tag == "g" and "run" in cls:
            self.runs += 1
        if tag == "p" and "head" in cls:
            self._cap, self._buf = "head", []
        elif tag == "span" and "step" in cls:
            self._cap, self._buf = "step", []
        elif tag == "span" and a.get("id") in ("group-count", "barrier-count"):
            self._cap, self._buf = a["id"], []

    def handle_endtag(self, tag):
        if self._cap and tag in ("p", "span"):
            text = "".join(self._buf)
            if self._cap == "head":
                self.head = text
            elif self._cap == "step":
                self.steps.append(text)
            else:
                self.texts[self._cap] = text
            self._cap = None

    def handle_data(self, data):
        if self._cap:
            self._buf.append(data)


def test_html_is_self_contained(convnext, tmp_path):
    html = convnext.report.to_html(str(tmp_path / "r.html"))
    assert (tmp_path / "r.html").read_text(encoding="utf-8") == html
    # nothing is loaded from anywhere: no external scripts, styles, images or fonts
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", html)
    assert "@import" not in html and "url(" not in html
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
    # the template, style sheet and script are the package's resource files, inlined
    from importlib.resources import files
    assets = files("fxminimize").joinpath("report_assets")
    assert html.startswith("<!DOCTYPE html>") and "%JS%" not in html and "%CSS%" not in html
    for name in ("page.css", "page.js"):
        text = assets.joinpath(name).read_text(encoding="utf-8")
        assert len(text) > 1000 and text in html, name
    data = json.loads(re.search(r'<script type="application/json" id="fxm-data">(.*?)</script>', html,
                                re.S).group(1))
    plan = convnext.plan
    assert len(data["groups"]) == len(plan.groups) == 41  # depthwise convs no longer chain their input and output spaces (grouped-conv rectangle)
    assert [g["er"] for g in data["groups"]] == [g.elements_removed for g in plan.groups]
    assert data["runs"], "repeated ConvNeXt blocks should be collapsible"
    assert {d["label"] for d in data["runs"]} >= {"encoder.stages.2.layers.1\u20138"}


def test_dot(convnext, tmp_path):
    dot = convnext.report.to_dot()
    plan = convnext.plan
    assert dot.startswith("digraph fxminimize {") and dot.rstrip().endswith("}")
    for g in plan.groups:
        assert f'"group {g.index}" [label="group {g.index}:' in dot
    name = convnext.report.graph.get
    pw1 = [n for n in convnext.report.graph.nodes if n.module == PW1][0].name
    assert f'"{pw1}" [label="{pw1}\\nlinear \u00b7 {PW1}\\n1024/1536 channels kept' in dot
    info = name(pw1)
    assert (info.name, info.module) == (pw1, PW1) and info.target == "linear"
    assert name("no such node") is None
    exe = shutil.which("dot")
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI: graphviz is not installed")
        pytest.skip("graphviz not installed")
    (tmp_path / "g.dot").write_text(dot)
    out = subprocess.run([exe, "-Tsvg", str(tmp_path / "g.dot")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count('class="node"') >= len(plan.size)


def test_page_in_headless_chromium(convnext, tmp_path):
    exe = _browser()
    path = tmp_path / "report.html"
    convnext.report.to_html(str(path))
    url = path.as_uri() + f"#explain={PW1}:{KEPT_CHANNEL}"
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = _DOM()
    dom.feed(out.stdout)
    plan = convnext.plan
    assert 'data-ready="1"' in out.stdout, "the page's script did not finish"
    # the groups shown are the analysis's groups
    assert dom.group_rows == [g.index for g in plan.groups]
    assert dom.texts["group-count"] == str(len(plan.groups))
    assert dom.texts["barrier-count"] == "0"
    # the graph: repeated blocks collapsed (4 runs), except the one holding the explained node
    assert dom.runs == 3
    pw1 = [n for n in convnext.report.graph.nodes if n.module == PW1][0].name
    assert pw1 in dom.nodes
    assert len(dom.nodes) == len(set(dom.nodes)) > 50
    assert set(dom.nodes) <= {n.name for n in convnext.report.graph.nodes}
    # the explanation of a known kept channel, line for line the same as Report.explain
    expected = convnext.report.explain(PW1, KEPT_CHANNEL).splitlines()
    assert expected[0].startswith(f"channel {KEPT_CHANNEL} of {PW1} (") and expected[0].endswith("is kept because:")
    assert dom.head == expected[0]
    assert ["  - " + s for s in dom.steps] == expected[1:]
    assert expected[-1].endswith("is a model output")


def test_page_explains_removed_channel(convnext, tmp_path):
    exe = _browser()
    path = tmp_path / "report.html"
    name = [n for n in convnext.report.graph.nodes if n.module == PW1][0].name
    convnext.report.to_html(str(path), explain=(name, REMOVED_CHANNEL))
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = _DOM()
    dom.feed(out.stdout)
    assert dom.head == convnext.report.explain(PW1, REMOVED_CHANNEL)
    assert "is removed: its value is the constant 0 for every input" in dom.head
    assert dom.steps == []

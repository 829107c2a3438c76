"""The Python API, the transfer command line over it, and the HTTP service the way they are
used: `jaxgenre.api` in-process, `python -m jaxgenre.transfer` end to end, then
`python -m jaxgenre.serve` as real uvicorn processes on 127.0.0.1 (every refusal the service
promises, a full queue, a client that hangs up mid-upload) and its web page in Debian's headless
Chromium (upload, chart, convert, a playable <audio>; a screenshot).

The `serve` tier (`-m serve`; .ci/run installs chromium and chromium-driver when missing): one
module, so that one tiny StarGAN (4 steps) serves every test.
"""
import concurrent.futures
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile

import numpy as np
import pytest
import soundfile

from jaxgenre import api
from jaxgenre.data import audio_files
from tests import train_helpers as th

pytestmark = pytest.mark.serve
RATE = 22050


@pytest.fixture(scope="module")
def runs(tiny_fma, classifiers, tmp_path_factory):
    """(classifier workdir, StarGAN workdir): the GAN trained 4 steps with classifiers[0] in its
    loss, on the 8 fake devices of this process."""
    from jaxgenre import train
    workdir = str(tmp_path_factory.mktemp("serve_gan"))
    train.train_and_evaluate(th.gan_config(tiny_fma[0], **{"gan.classifier_workdir":
                                                             classifiers[0]}), workdir)
    return classifiers[1], workdir


def _tone(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def _wav(seconds: float, rate: int = RATE) -> bytes:
    f = io.BytesIO()
    soundfile.write(f, _tone(seconds, rate), rate, format="WAV", subtype="PCM_16")
    return f.getvalue()


# ------------------------------------------------------------------------------ the Python API
def test_the_api_takes_any_rate_and_layout_and_matches_the_windows_judged_alone(runs):
    classifier = api.Classifier.from_run(runs[0], window_seconds=2.0, batch_sizes=(1, 8))
    stereo = _tone(5.0, 44100, channels=2)  # [N, 2] int16 PCM at another rate
    pcm = np.round(stereo * 32767).astype(np.int16)
    got = classifier.predict(pcm, 44100)
    mono = audio_files.conform(stereo, 44100, RATE)
    starts = [0, RATE, 2 * RATE, len(mono) - 2 * RATE]  # 2 s windows every 1 s, the last at the end
    alone = classifier.predict_many([mono[s:s + 2 * RATE] for s in starts])
    assert got.window_probabilities.shape == (4, len(classifier.class_names))
    np.testing.assert_allclose(got.window_probabilities,
                               np.stack([a.probabilities for a in alone]), atol=2e-3)
    np.testing.assert_allclose(got.probabilities.sum(), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="samples are not finite"):
        classifier.predict(np.full(100, np.nan, np.float32), RATE)

    transfer = api.StyleTransfer.from_run(runs[1])
    out = transfer.convert(_tone(2.3, 44100), 44100, to="Rock", strength=0.5)
    assert out.dtype == np.float32 and abs(len(out) - round(2.3 * 44100)) <= 2
    assert np.isfinite(out).all() and np.abs(out).max() <= audio_files.PEAK
    with pytest.raises(ValueError, match="Unknown genre 'Polka'; valid: "):
        transfer.convert(_tone(1.0), RATE, to="Polka")
    with pytest.raises(ValueError, match=r"strength 1.5 is outside \[0, 1\]"):
        transfer.convert(_tone(1.0), RATE, to="Rock", strength=1.5)


def _module(module, *args, devices=1):
    """Runs `python -m module args` (one fake device by default); (exit code, its output)."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=th.ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_transfer_cli_converts_any_length_and_refuses_bad_input(runs, classifiers, tmp_path):
    """`python -m jaxgenre.transfer`, a thin command line over `api.StyleTransfer`."""
    workdir = runs[1]
    song = str(tmp_path / "song.wav")
    t = np.arange(60_000) / 44_100  # 1.36 s at another rate: resampled to the run's 22.05 kHz
    soundfile.write(song, 0.3 * np.sin(2 * np.pi * 220 * t), 44_100)
    out = str(tmp_path / "out.wav")
    code, log = _module("jaxgenre.transfer", "--workdir", workdir, "--input", song, "--to", "Rock",
                     "--output", out, "--classifier", classifiers[1], "--gl_iters", "4")
    assert code == 0, log[-3000:]
    audio, rate = soundfile.read(out)
    assert rate == 22050 and abs(len(audio) - 30_000) <= 1 and np.isfinite(audio).all()
    assert os.path.exists(str(tmp_path / "out.png")) and "input genre (by" in log

    code, log = _module("jaxgenre.transfer", "--workdir", workdir, "--input", song, "--to", "all",
                     "--output", str(tmp_path / "all"), "--gl_iters", "2")
    assert code == 0, log[-3000:]
    assert len([f for f in os.listdir(tmp_path / "all") if f.endswith(".wav")]) == 8

    # many files (one named, a directory holding another of the same stem), each to every genre
    # but the one the classifier hears in it
    (tmp_path / "more").mkdir()
    shutil.copy(song, tmp_path / "more" / "song.wav")
    code, log = _module("jaxgenre.transfer", "--workdir", workdir, "--to", "all", "--classifier",
                     classifiers[1], "--output", str(tmp_path / "many"), "--gl_iters", "2", song,
                     str(tmp_path / "more"))
    assert code == 0, log[-3000:]
    heard = [line.split("input genre (by ")[1].split(": ")[1].split(" ")[0]
             for line in log.splitlines() if "input genre (by " in line]
    assert len(heard) == 2
    genres = th.read_json(os.path.join(workdir, "dataset_info.json"))["class_names"]
    assert sorted(os.listdir(tmp_path / "many")) == sorted(
        f"{stem}_{g}.{ext}" for stem, source in (("song", heard[0]), ("song_2", heard[1]))
        for g in genres if g != source for ext in ("wav", "png"))

    empty, broken = str(tmp_path / "empty.wav"), str(tmp_path / "broken.mp3")
    soundfile.write(empty, np.zeros(0), 22050)
    with open(broken, "wb") as f:
        f.write(b"not audio at all")
    cases = [(["--workdir", workdir, "--to", "Polka", "--input", song],
              "Unknown genre 'Polka' for --to; valid: "),
             (["--workdir", workdir, "--to", "Rock", "--input", empty], "holds no audio samples"),
             (["--workdir", workdir, "--to", "Rock", "--input", broken], "Cannot read"),
             (["--workdir", workdir, "--to", "Rock", "--input", str(tmp_path / "missing.wav")],
              "no such file"),
             # a classifier where a generator is expected
             (["--workdir", classifiers[0], "--input", song, "--to", "Rock"],
              "is a 'classifier' run where a stargan or autoencoder run")]
    results = th.cli_exits("jaxgenre.tools.transfer", [args for args, _ in cases])
    for (_, message), (code, log) in zip(cases, results, strict=True):
        assert code != 0 and message in log and "Traceback" not in log, log[-2000:]
    code, log = _module("jaxgenre.evaluate_transfer", "--method", "identity", "--judge", workdir,
                     "--output_dir", str(tmp_path / "eval"))
    assert code != 0 and "is a 'stargan' run where a classifier run is needed" in log



# ------------------------------------------------------------------------------ the service
class Server:
    """`python -m jaxgenre.serve` on a free port of 127.0.0.1 (one fake device), its output in a
    file; `request` is a bounded urllib call that returns (status, headers, body)."""

    def __init__(self, tmp_path, *args):
        self.port = th.free_port()
        self.log_path = tmp_path / f"serve_{self.port}.log"
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jaxgenre.serve", "--port", str(self.port), *args],
                cwd=th.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def request(self, path, data=None, headers=None, timeout=120):
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def wait(self, path: str, seconds: float = 240) -> list[int]:
        """Polls `path` every 0.2 s until it answers 200; returns the statuses seen."""
        seen, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()[-3000:]
            try:
                seen.append(self.request(path, timeout=5)[0])
            except (urllib.error.URLError, ConnectionError):
                seen.append(0)
            if seen[-1] == 200:
                return seen
            time.sleep(0.2)
        raise AssertionError(f"{path} never answered 200: {seen[-10:]}\n{self.log()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM: uvicorn finishes the requests in flight, then ends by the signal (-15)."""
        self.proc.terminate()
        return self.proc.wait(timeout=60)


def _form(fields: dict, file_name: str, content: bytes) -> tuple[bytes, dict]:
    """A multipart/form-data body with `fields` and one file field `file`."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{file_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 .encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def servers(runs, tmp_path_factory):
    """(a server with both runs, a classifier-only one serving the classifier's int8 LiteRT
    export), started side by side."""
    from jaxgenre.tools import export
    tmp = tmp_path_factory.mktemp("servers")
    both = Server(tmp, "--classifier", runs[0], "--generator", runs[1], "--max_seconds", "20",
                  "--max_convert_seconds", "7", "--max_upload_mb", "2", "--queue_size", "1",
                  "--max_batch_requests", "4")
    int8 = str(tmp / "int8")
    export.export_lite(runs[0], int8, quantize="int8", calibration_clips=32)
    alone = Server(tmp, "--classifier", int8)
    yield both, alone
    for server in (both, alone):
        assert server.stop() in (0, -signal.SIGTERM) and "Traceback" not in server.log(), \
            server.log()[-3000:]


def test_liveness_comes_first_readiness_after_the_warm_up_and_the_api_answers(servers):
    server = servers[0]
    assert server.wait("/healthz")[-1] == 200
    readiness = server.wait("/readyz")
    assert "ready: every batch shape is compiled" in server.log()
    status, _, body = server.request("/v1/genres")
    genres = json.loads(body)
    assert status == 200 and genres["convert"] is True and len(genres["genres"]) == 8
    info = json.loads(server.request("/v1/info")[2])
    assert info["classifier"]["task"] == "classifier" and info["generator"]["task"] == "stargan"
    assert info["classifier"]["sample_rate"] == RATE and info["generator"]["step"] == 4

    status, _, body = server.request("/v1/classify", *_form({}, "tone.wav", _wav(7.0)))
    result = json.loads(body)
    assert status == 200, body
    probabilities = [g["probability"] for g in result["genres"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert abs(sum(probabilities) - 1) < 1e-4 and abs(result["duration_seconds"] - 7.0) < 1e-3
    timeline = result["timeline"]
    assert len(timeline["times"]) == len(timeline["probabilities"]) >= 1
    assert len(timeline["probabilities"][0]) == 8

    status, headers, body = server.request(
        "/v1/convert", *_form({"to": genres["genres"][2], "strength": "0.5"}, "tone.wav",
                              _wav(2.5)))
    assert status == 200 and headers["content-type"] == "audio/wav", body[:300]
    audio, rate = soundfile.read(io.BytesIO(body))
    assert rate == RATE and abs(len(audio) - 2.5 * RATE) <= 1 and np.isfinite(audio).all()
    assert "_" + genres["genres"][2] + ".wav" in headers["content-disposition"]
    openapi = json.loads(server.request("/openapi.json")[2])
    assert {"/v1/classify", "/v1/convert", "/v1/genres", "/v1/info"} <= set(openapi["paths"])
    if len(readiness) > 1:  # the warm-up outlasted the first poll: it was refused meanwhile
        assert 503 in readiness


def test_an_int8_litert_export_is_served_like_a_run(servers):
    alone = servers[1]
    alone.wait("/readyz")
    info = json.loads(alone.request("/v1/info")[2])["classifier"]
    assert info["runtime"] == "litert-int8" and info["step"] == 4 and info["sample_rate"] == RATE
    status, _, body = alone.request("/v1/classify", *_form({}, "tone.wav", _wav(7.0)))
    assert status == 200, body
    result = json.loads(body)
    assert len(result["genres"]) == 8
    assert abs(sum(g["probability"] for g in result["genres"]) - 1) < 1e-4
    assert len(result["timeline"]["times"]) >= 1


def test_bad_input_gets_a_4xx_naming_the_problem_and_the_server_carries_on(servers):
    server, alone = servers
    server.wait("/readyz")
    alone.wait("/readyz")
    wav = _wav(1.5)
    cases = [
        (server, "/v1/classify", {}, "notes.mp3", b"these are not audio bytes", 415,
         "Cannot read notes.mp3 as audio"),
        (server, "/v1/classify", {}, "empty.wav", b"", 400, "empty.wav is empty"),
        (server, "/v1/classify", {}, "long.wav", _wav(21.0), 413,
         "long.wav is longer than this server's limit of 20 s"),
        (server, "/v1/convert", {"to": "Rock"}, "long.wav", _wav(8.0), 413,
         "long.wav is longer than this server's limit of 7 s"),
        (server, "/v1/convert", {"to": "Polka"}, "tone.wav", wav, 422,
         "Unknown genre 'Polka'; valid: "),
        (server, "/v1/convert", {"to": "Rock", "strength": "1.5"}, "tone.wav", wav, 422,
         "strength 1.5 is outside [0, 1]"),
        (alone, "/v1/convert", {"to": "Rock"}, "tone.wav", wav, 404,
         "started without a style-transfer run"),
    ]
    for target, path, fields, name, content, status, message in cases:
        got, _, body = target.request(path, *_form(fields, name, content))
        assert (got, True) == (status, message in body.decode()), (name, got, body[:500])
    body, headers = _form({}, "tone.wav", _wav(3.0))
    head = (f"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: {headers['Content-Type']}"
            "\r\nContent-Length: {}\r\n\r\n")
    # an upload over --max_upload_mb is refused from its headers, before a byte of it is read
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/v1/classify")
    connection.putheader("Content-Type", headers["Content-Type"])
    connection.putheader("Content-Length", str(3 * 2**20))
    connection.endheaders()  # and no body
    answer = connection.getresponse()
    assert answer.status == 413 and "this server takes at most 2 MiB" in answer.read().decode()
    connection.close()
    # a chunked upload (no Content-Length, so no limit known before reading) is refused
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/v1/classify", body=iter([body]), headers=headers,
                       encode_chunked=True)
    answer = connection.getresponse()
    assert answer.status == 411 and "Content-Length" in answer.read().decode()
    connection.close()
    # a client that hangs up mid-upload: a fifth of the body it announced, then gone
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(head.format(len(body)).encode() + body[:len(body) // 5])
    time.sleep(1.0)
    assert server.request("/v1/classify", *_form({}, "tone.wav", wav))[0] == 200
    assert server.proc.poll() is None and "Traceback" not in server.log()
    assert '"path": "/v1/classify", "endpoint": "classify", "status": 499' in server.log()
    # a file name that is not ASCII comes back in the RFC 6266 form, an ASCII one beside it
    status, headers, _ = server.request("/v1/convert", *_form({"to": "Rock"}, "曲.wav", wav))
    assert status == 200 and headers["content-disposition"] == (
        "attachment; filename=\"__Rock.wav\"; filename*=UTF-8''%E6%9B%B2_Rock.wav")


def test_a_full_queue_answers_503_with_retry_after_and_nothing_piles_up(servers):
    """queue_size 1: of 16 conversions at once, the ones that find the queue full are refused at
    once; the others are converted; the server serves on."""
    server = servers[0]
    server.wait("/readyz")
    form = _form({"to": "Rock"}, "tone.wav", _wav(4.0))
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: server.request("/v1/convert", *form), range(16)))
    statuses = sorted(a[0] for a in answers)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
    assert all(a[1].get("retry-after") == "1" and b"queue is full" in a[2]
               for a in answers if a[0] == 503)
    metrics = server.request("/metrics")[2].decode()
    refused = [line for line in metrics.splitlines()
               if line.startswith('jaxgenre_requests_total{endpoint="convert",status="503"}')]
    assert refused and float(refused[0].split()[-1]) == statuses.count(503)
    assert server.request("/healthz")[0] == 200


def test_metrics_hold_every_name_the_dashboard_reads(servers):
    from jaxgenre.serve import metrics as metrics_lib
    server = servers[0]
    server.wait("/readyz")
    server.request("/v1/classify", *_form({}, "tone.wav", _wav(2.0)))
    text = server.request("/metrics")[2].decode()
    for name in metrics_lib.names(metrics_lib.create()):
        assert f"\n{name}" in text or f"# TYPE {name.removesuffix('_total')}" in text, name
    assert 'jaxgenre_model_info{dataset="fma/small"' in text and "jaxgenre_ready 1.0" in text
    lines = [json.loads(line) for line in server.log().splitlines()
             if line.startswith('{"time"')]
    assert any(line["endpoint"] == "classify" and line["status"] == 200 for line in lines)


# ------------------------------------------------------------------------------ the web page
def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("Debian's chromium and chromium-driver are needed (apt-get install -y "
                    "chromium chromium-driver; .ci/run installs them).")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=900,1300", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_web_page_classifies_and_converts_a_demo_clip_in_chromium(servers, tiny_fma, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    server = servers[0]
    server.wait("/readyz")
    with zipfile.ZipFile(os.path.join(tiny_fma[1], "fma_small.zip")) as z:  # FMA's layout
        name = sorted(n for n in z.namelist() if n.endswith(".mp3"))[0]
        clip = str(tmp_path / os.path.basename(name))
        with open(clip, "wb") as f:
            f.write(z.read(name))
    browser = _browser()
    try:
        wait = WebDriverWait(browser, 120)
        browser.get(server.url + "/")
        wait.until(lambda b: len(Select(b.find_element(By.ID, "to")).options) == 8)
        browser.find_element(By.ID, "file").send_keys(clip)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#chart path.genre")) == 8)
        top = browser.find_elements(By.CSS_SELECTOR, "#top li")
        assert len(top) == 5 and top[0].text.endswith("%")
        Select(browser.find_element(By.ID, "to")).select_by_visible_text("Rock")
        browser.find_element(By.ID, "convert").click()
        playable = ("const a = document.getElementById('converted');"
                    "return a.src.startsWith('blob:') && a.readyState >= 1 && a.duration > 0")
        wait.until(lambda b: b.execute_script(playable)
                   or "error" in b.find_element(By.ID, "status").get_attribute("class"))
        assert browser.execute_script(playable), browser.find_element(By.ID, "status").text
        duration = browser.execute_script("return document.getElementById('converted').duration")
        original = browser.execute_script("return document.getElementById('original').duration")
        assert abs(duration - original) < 0.1, (duration, original)
        assert browser.find_element(By.ID, "download").get_attribute("download").endswith(
            "_Rock.wav")
        assert "converted to Rock" in browser.find_element(By.ID, "status").text
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
        # a classifier-only server's page classifies and offers no conversion
        servers[1].wait("/readyz")
        browser.get(servers[1].url + "/")
        wait.until(lambda b: "trained on" in b.find_element(By.ID, "model").text)
        browser.find_element(By.ID, "file").send_keys(clip)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#chart path.genre")) == 8)
        assert not browser.find_element(By.ID, "transfer").is_displayed()
    finally:
        browser.quit()

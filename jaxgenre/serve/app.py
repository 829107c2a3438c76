"""The HTTP API (FastAPI; OpenAPI at /openapi.json, interactive docs at /docs).

  GET  /                 the web page (static/index.html)
  GET  /healthz          liveness: 200 while the process serves
  GET  /readyz           readiness: 200 once the warm-up compiled every batch shape, else 503
  GET  /metrics          Prometheus metrics (`metrics`)
  GET  /v1/genres        the genres, and whether this server converts
  GET  /v1/info          the runs served (workdir, task, model, step, dataset, sample rate), limits
  POST /v1/classify      multipart `file` -> genres with probabilities and their timeline
  POST /v1/convert       multipart `file`, form `to` (a genre), `strength` (0..1) -> audio/wav

Every refusal is a 4xx with {"detail": message naming the problem} (FastAPI's own 422 for a
malformed form lists its problems instead): not audio (415), empty (400), too long (413: a body
over the upload limit from its Content-Length before it is read, audio over the duration limit
after decoding at most that much), no Content-Length (411), unknown genre or strength outside
[0, 1] (422, with the valid values), conversion on a classifier-only server (404), queue full or
not warmed up yet (503 with Retry-After, before the body is read). A client that disconnects
mid-upload is logged with status 499 and costs nothing else. Each request is one JSON line on
stdout (the access log).
"""
import asyncio
import io
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse

import numpy as np
import prometheus_client
import pydantic
import soundfile
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from jaxgenre.data import audio_files
from jaxgenre.serve import batching
from jaxgenre.serve import service as service_lib
from jaxgenre.transfer import generator

PAGE = os.path.join(os.path.dirname(__file__), "static", "index.html")
ENDPOINTS = {"/": "page", "/healthz": "healthz", "/readyz": "readyz", "/metrics": "metrics",
             "/v1/genres": "genres", "/v1/info": "info", "/v1/classify": "classify",
             "/v1/convert": "convert", "/docs": "docs", "/openapi.json": "docs"}
RETRY_AFTER_S = 1
REQUEST_TIMEOUT_S = 600  # a request still waiting for its batch after this gets a 504
MODEL_PATHS = ("/v1/classify", "/v1/convert")


class GenreProbability(pydantic.BaseModel):
    genre: str
    probability: float


class Timeline(pydantic.BaseModel):
    times: list[float] = pydantic.Field(description="Each window's centre (s).")
    probabilities: list[list[float]] = pydantic.Field(
        description="[window][genre], genres in the order of `genres` from /v1/genres.")


class Classification(pydantic.BaseModel):
    filename: str
    duration_seconds: float
    genres: list[GenreProbability] = pydantic.Field(description="Most probable first.")
    timeline: Timeline
    warning: str | None = pydantic.Field(None, description="Why the verdict means little "
                                         "(silent, shorter than the model's crop), or null.")


class Observe:
    """ASGI middleware: the request counter, latency histogram and access log line for every
    request; and for the model endpoints, refusals before the body is read: no Content-Length
    (411), a body over `max_bytes` (413), not warmed up yet (503). uvicorn delivers no more body
    than Content-Length announces, so the limit holds for every upload."""

    def __init__(self, app, metrics, max_bytes: int, ready):
        self.app, self.metrics, self.max_bytes, self.ready = app, metrics, max_bytes, ready

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status, gone = time.perf_counter(), 500, False
        endpoint = ENDPOINTS.get(scope["path"], "other")

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def receive_watched():
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] == "http.disconnect"
            return message
        length = dict(scope["headers"]).get(b"content-length")
        refusal = None
        if scope["method"] == "POST" and scope["path"] in MODEL_PATHS:
            if not self.ready():
                refusal = (503, "The server is warming up (compiling); retry shortly.")
            elif length is None:
                refusal = (411, "Send the upload with a Content-Length (no chunked bodies).")
            elif int(length) > self.max_bytes:
                refusal = (413, f"The upload is {int(length) / 2**20:.1f} MiB; this server takes "
                           f"at most {self.max_bytes / 2**20:g} MiB.")
        try:
            if refusal:
                headers = {"Retry-After": str(RETRY_AFTER_S)} if refusal[0] == 503 else None
                await JSONResponse({"detail": refusal[1]}, refusal[0], headers)(
                    scope, receive, send_status)
            else:
                await self.app(scope, receive_watched, send_status)
        finally:
            seconds = time.perf_counter() - start
            status = 499 if gone else status  # whatever the app answered, nobody read it
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.request_seconds.labels(endpoint).observe(seconds)
            client = scope.get("client") or ("", 0)
            print(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "method": scope["method"], "path": scope["path"],
                              "endpoint": endpoint, "status": status,
                              "seconds": round(seconds, 4), "bytes_in": int(length or 0),
                              "client": client[0]}), file=sys.stdout, flush=True)


def create_app(service: service_lib.Service) -> FastAPI:
    """The application for `service` (its warm-up is the caller's: see __main__)."""
    settings, metrics = service.settings, service.metrics
    app = FastAPI(title="jaxgenre", summary="Music genre classification and genre style "
                  "transfer with trained jaxgenre runs.")
    app.add_middleware(Observe, metrics=metrics, max_bytes=int(settings.max_upload_mb * 2**20),
                       ready=service.ready.is_set)
    decoding = asyncio.Semaphore(settings.decoders)  # uploads decoded at once: memory bounded

    @app.get("/", include_in_schema=False)
    async def page():
        with open(PAGE, encoding="utf-8") as f:
            return HTMLResponse(f.read())

    @app.get("/healthz", summary="Liveness: 503 once a model's worker has died")
    async def healthz():
        dead = service.dead_workers()
        if dead:
            return JSONResponse({"status": "failed", "detail": f"the {', '.join(dead)} worker "
                                 "stopped: restart the server"}, 503)
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: 200 once every batch shape is compiled")
    async def readyz():
        if not service.ready.is_set():
            return JSONResponse({"ready": False, "detail": "warming up (compiling)"}, 503,
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        return {"ready": True}

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page():
        return Response(prometheus_client.generate_latest(metrics.registry),
                        media_type=prometheus_client.CONTENT_TYPE_LATEST)

    @app.get("/v1/genres", summary="The genres, and whether this server converts")
    async def genres():
        return {"genres": service.class_names, "convert": service.transfer is not None}

    @app.get("/v1/info", summary="The runs served and the limits")
    async def info():
        return {"classifier": service.classifier.info,
                "generator": service.transfer.info if service.transfer else None,
                "max_seconds": settings.max_seconds,
                "max_convert_seconds": settings.max_convert_seconds,
                "max_upload_mb": settings.max_upload_mb, "ready": service.ready.is_set()}

    @app.post("/v1/classify", response_model=Classification,
              summary="Genres of an uploaded audio file, with their timeline")
    async def classify(file: UploadFile = File(..., description="Any format librosa reads.")):
        async with decoding:
            audio = await _decode(file, service.classifier.sample_rate, settings.max_seconds)
        prediction = await _await(service.submit_classify, audio, file.filename or "upload")
        metrics.audio_seconds.labels("classify").inc(len(audio) / service.classifier.sample_rate)
        p = prediction.probabilities
        return Classification(
            filename=file.filename or "", duration_seconds=len(audio) / service.classifier.sample_rate,
            genres=[GenreProbability(genre=service.class_names[i], probability=float(p[i]))
                    for i in np.argsort(-p, kind="stable")],
            timeline=Timeline(times=prediction.times.tolist(),
                              probabilities=prediction.window_probabilities.tolist()),
            warning=prediction.warning)

    @app.post("/v1/convert", summary="An uploaded audio file turned into a genre (WAV)",
              response_class=Response,
              responses={200: {"content": {"audio/wav": {}}, "description": "16-bit PCM WAV at "
                               "the generator's sample rate."}})
    async def convert(file: UploadFile = File(..., description="Any format librosa reads."),
                      to: str = Form(..., description="The target genre (see /v1/genres)."),
                      strength: float = Form(1.0, description="0 keeps the input (through the "
                                             "vocoder), 1 the full conversion.")):
        if service.transfer is None:
            raise HTTPException(404, "This server converts nothing: it was started without "
                                "a style-transfer run.")
        try:
            target = service.transfer.target(to)
            generator.check_strength(np.array([strength]))
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        rate = service.transfer.sample_rate
        async with decoding:
            audio = await _decode(file, rate, settings.max_convert_seconds)
        result = await _await(service.submit_convert, audio, target, strength)
        seconds = len(audio) / rate
        metrics.audio_seconds.labels("convert").inc(seconds)
        metrics.realtime_factor.observe(seconds / max(result.seconds, 1e-9))
        wav = io.BytesIO()
        soundfile.write(wav, result.audio, rate, format="WAV", subtype="PCM_16")
        return Response(wav.getvalue(), media_type="audio/wav", headers={
            "Content-Disposition": _attachment(file.filename, to),
            "X-Gain-dB": f"{result.gain_db:.2f}"})

    return app


def _attachment(filename: str | None, genre: str) -> str:
    """Content-Disposition for `<stem>_<genre>.wav`: an ASCII name for every client, and the
    UTF-8 one (RFC 6266) where the upload's name was not ASCII."""
    stem = os.path.splitext(os.path.basename(filename or "upload"))[0]
    name = f"{stem}_{audio_files.file_stem(genre)}.wav"
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                         for c in name)
    return (f'attachment; filename="{ascii_name}"; '
            f"filename*=UTF-8''{urllib.parse.quote(name)}")


async def _decode(file: UploadFile, rate: int, max_seconds: float) -> np.ndarray:
    """The upload as float32 [N] at `rate`, mono; 400 empty, 415 not audio, 413 too long."""
    name = file.filename or "the upload"
    if not file.size:
        raise HTTPException(400, f"{name} is empty: upload an audio file.")
    try:
        return await run_in_threadpool(_read_upload, file, name, rate, max_seconds)
    except audio_files.TooLong:
        raise HTTPException(413, f"{name} is longer than this server's limit of {max_seconds:g} "
                            "s: send a shorter excerpt.") from None
    except ValueError as e:
        status = 400 if "no audio samples" in str(e) or "not finite" in str(e) else 415
        raise HTTPException(status, str(e)) from None


def _read_upload(file: UploadFile, name: str, rate: int, max_seconds: float) -> np.ndarray:
    """Decodes through a named file (mp3 and the like need a path; the upload's suffix tells the
    decoder its format), naming the upload rather than the temporary file in errors."""
    suffix = os.path.splitext(name)[1][:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        file.file.seek(0)
        shutil.copyfileobj(file.file, f)
        f.flush()
        try:
            return audio_files.read(f.name, rate, max_seconds)
        except ValueError as e:
            raise type(e)(str(e).replace(f.name, name)) from None


async def _await(submit, *args):
    """Submits to a batcher and waits (at most REQUEST_TIMEOUT_S: 504); 503 with Retry-After
    when its queue is full."""
    try:
        future = submit(*args)
    except batching.QueueFull:
        raise HTTPException(503, "The server is busy (its queue is full); retry shortly.",
                            headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), REQUEST_TIMEOUT_S)
    except TimeoutError:
        raise HTTPException(504, f"No answer within {REQUEST_TIMEOUT_S} s.") from None

"""The HTTP API (FastAPI; OpenAPI at /openapi.json, interactive docs at /docs).

  GET  /                 the web page (static/index.html)
  GET  /healthz          liveness: 200 while the process serves
  GET  /readyz           readiness: 200 once the warm-up compiled every batch shape, else 503
  GET  /metrics          Prometheus metrics (`metrics`)
  GET  /v1/genres        the genres, and whether this server converts
  GET  /v1/info          the runs served (workdir, task, model, step, dataset, sample rate), limits
  POST /v1/classify      multipart `file` -> genres with probabilities and their timeline
  POST /v1/convert       multipart `file`, form `to` (a genre), `strength` (0..1) -> audio/wav

Every refusal is a 4xx with {"detail": message naming the problem}: not audio (415), empty
(400), too long (413, from the audio's duration or before reading from Content-Length), unknown
genre (422, with the valid ones), conversion on a classifier-only server (404), queue full or
not warmed up yet (503 with Retry-After). A client that disconnects mid-upload is logged with
status 499 and costs nothing else. Each request is one JSON line on stdout (the access log).
"""
import asyncio
import io
import json
import os
import sys
import tempfile
import time

import numpy as np
import prometheus_client
import pydantic
import soundfile
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.requests import ClientDisconnect

from jaxgenre.data import audio_files
from jaxgenre.serve import batching
from jaxgenre.serve import service as service_lib

PAGE = os.path.join(os.path.dirname(__file__), "static", "index.html")
ENDPOINTS = {"/": "page", "/healthz": "healthz", "/readyz": "readyz", "/metrics": "metrics",
             "/v1/genres": "genres", "/v1/info": "info", "/v1/classify": "classify",
             "/v1/convert": "convert", "/docs": "docs", "/openapi.json": "docs"}
RETRY_AFTER_S = 1


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
    request, and the body limit checked from Content-Length before anything is read."""

    def __init__(self, app, metrics, max_bytes: int):
        self.app, self.metrics, self.max_bytes = app, metrics, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500
        endpoint = ENDPOINTS.get(scope["path"], "other")

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        length = int(dict(scope["headers"]).get(b"content-length", b"0") or 0)
        try:
            if length > self.max_bytes:
                await JSONResponse({"detail": f"The upload is {length / 2**20:.1f} MiB; this "
                                    f"server takes at most {self.max_bytes / 2**20:.0f} MiB "
                                    "(--max_upload_mb)."}, 413)(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.request_seconds.labels(endpoint).observe(seconds)
            client = scope.get("client") or ("", 0)
            print(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "method": scope["method"], "path": scope["path"],
                              "endpoint": endpoint, "status": status,
                              "seconds": round(seconds, 4), "bytes_in": length,
                              "client": client[0]}), file=sys.stdout, flush=True)


def create_app(service: service_lib.Service) -> FastAPI:
    """The application for `service` (its warm-up is the caller's: see __main__)."""
    settings, metrics = service.settings, service.metrics
    app = FastAPI(title="jaxgenre", summary="Music genre classification and genre style "
                  "transfer with trained jaxgenre runs.")
    app.add_middleware(Observe, metrics=metrics, max_bytes=int(settings.max_upload_mb * 2**20))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request, exc):
        return Response(status_code=499)  # nobody reads it: the access log and metrics do

    @app.get("/", include_in_schema=False)
    async def page():
        with open(PAGE, encoding="utf-8") as f:
            return HTMLResponse(f.read())

    @app.get("/healthz", summary="Liveness")
    async def healthz():
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
        _check_ready(service)
        audio = await _decode(file, service.classifier.sample_rate, settings.max_seconds,
                              "--max_seconds")
        metrics.audio_seconds.labels("classify").inc(len(audio) / service.classifier.sample_rate)
        prediction = await _await(service.submit_classify, audio, file.filename or "upload")
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
                                "--generator (a style-transfer run).")
        if to not in service.class_names:
            raise HTTPException(422, f"Unknown genre {to!r}; valid: "
                                f"{', '.join(service.class_names)}.")
        if not 0.0 <= strength <= 1.0:
            raise HTTPException(422, f"strength {strength:g} is outside [0, 1]: 0 keeps the "
                                "input, 1 is the full conversion.")
        _check_ready(service)
        rate = service.transfer.sample_rate
        audio = await _decode(file, rate, settings.max_convert_seconds, "--max_convert_seconds")
        seconds = len(audio) / rate
        metrics.audio_seconds.labels("convert").inc(seconds)
        began = time.perf_counter()
        result = await _await(service.submit_convert, audio, service.class_names.index(to),
                              strength)
        metrics.realtime_factor.observe(seconds / max(time.perf_counter() - began, 1e-9))
        wav = io.BytesIO()
        soundfile.write(wav, result.audio, rate, format="WAV", subtype="PCM_16")
        stem = os.path.splitext(os.path.basename(file.filename or "upload"))[0]
        return Response(wav.getvalue(), media_type="audio/wav", headers={
            "Content-Disposition": f'attachment; filename="{stem}_{to}.wav"',
            "X-Gain-dB": f"{result.gain_db:.2f}"})

    return app


def _check_ready(service: service_lib.Service) -> None:
    if not service.ready.is_set():
        raise HTTPException(503, "The server is warming up (compiling); retry shortly.",
                            headers={"Retry-After": str(RETRY_AFTER_S)})


async def _decode(file: UploadFile, rate: int, max_seconds: float, flag: str) -> np.ndarray:
    """The upload as float32 [N] at `rate`, mono; 400 empty, 415 not audio, 413 too long."""
    name = file.filename or "the upload"
    data = await file.read()
    if not data:
        raise HTTPException(400, f"{name} is empty: upload an audio file.")
    try:
        audio = await run_in_threadpool(_read_bytes, data, name, rate)
    except ValueError as e:
        status = 400 if "no audio samples" in str(e) or "not finite" in str(e) else 415
        raise HTTPException(status, str(e)) from None
    if len(audio) > max_seconds * rate:
        raise HTTPException(413, f"{name} is {len(audio) / rate:.1f} s long; this server takes "
                            f"at most {max_seconds:g} s ({flag}).")
    return audio


def _read_bytes(data: bytes, name: str, rate: int) -> np.ndarray:
    """Decodes through a file (mp3 and the like need a path), naming the upload in errors."""
    suffix = os.path.splitext(name)[1][:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        try:
            return audio_files.read(f.name, rate)
        except ValueError as e:
            raise ValueError(str(e).replace(f.name, name)) from None


async def _await(submit, *args):
    """Submits to a batcher and waits; 503 with Retry-After when its queue is full."""
    try:
        future = submit(*args)
    except batching.QueueFull:
        raise HTTPException(503, "The server is busy (its queue is full); retry shortly.",
                            headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    return await asyncio.wrap_future(future)

"""The HMI's web application (Starlette): pages, their JSON, images, live events, /metrics.

Every route only reads: the LiveStore (fed by WatchVerdicts), GetHeatmaps, the model
repository's files and the audit store opened read-only.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from hmi.audit_reader import AuditUnavailable, pretty
from hmi.context import Hmi
from hmi.events import events
from hmi.model_info import published_versions, roc_path, version_info
from hmi.verdicts import VerdictView, from_audit
from hmi.views import live_row, product_rows, product_summary, reject_patches, strip_grid

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
IMAGE_KINDS = ("overlay", "heatmap", "patch")


def _hmi(request: Request) -> Hmi:
    return request.app.state.hmi


def _page(request: Request, name: str, title: str, **extra: Any) -> Response:
    return templates.TemplateResponse(request, name, {"title": title, **extra})


# ---- pages ------------------------------------------------------------------------------------
async def home(request: Request) -> Response:
    return RedirectResponse("/live")


async def live_page(request: Request) -> Response:
    return _page(request, "live.html", "Live line", window_s=_hmi(request).config.window_s)


async def products_page(request: Request) -> Response:
    return _page(request, "products.html", "Products")


async def model_page(request: Request) -> Response:
    return _page(request, "model.html", "Model")


async def audit_page(request: Request) -> Response:
    return _page(request, "audit.html", "Audit", acquisition_id=request.query_params.get("id", ""))


async def acquisition_page(request: Request) -> Response:
    return _page(request, "reject.html", "Reject detail", acquisition_id=request.path_params["acquisition_id"])


# ---- JSON -------------------------------------------------------------------------------------
async def api_summary(request: Request) -> JSONResponse:
    return JSONResponse(_hmi(request).summary())


async def api_verdicts(request: Request) -> JSONResponse:
    n = max(1, min(2000, int(request.query_params.get("n", "50"))))
    return JSONResponse([live_row(v) for v in _hmi(request).store.recent(n)])


async def api_products(request: Request) -> JSONResponse:
    hmi = _hmi(request)
    rows = product_rows(hmi.store.products(), hmi.labels.get())
    return JSONResponse({"rows": rows, "summary": product_summary(rows),
                         "labels_file": str(hmi.labels.path) if hmi.labels.path else None})


def _verdict(hmi: Hmi, acquisition_id: str) -> tuple[VerdictView | None, str]:
    """From memory, else from the audit store; the second item says where it came from (or why not)."""
    held = hmi.store.get(acquisition_id)
    if held is not None:
        return held, "live"
    try:
        record = hmi.audit.record(acquisition_id)
    except AuditUnavailable as exc:
        return None, str(exc)
    if record is None:
        return None, f"acquisition '{acquisition_id}' is not in the audit store"
    return from_audit(record, hmi.recipe), "audit"


async def api_acquisition(request: Request) -> JSONResponse:
    hmi, acquisition_id = _hmi(request), request.path_params["acquisition_id"]
    verdict, source = _verdict(hmi, acquisition_id)
    if verdict is None:
        return JSONResponse({"acquisition_id": acquisition_id, "problem": source}, status_code=404)
    images = hmi.heatmaps.images(acquisition_id) if verdict.decision == "REJECT" else None
    kept = list(images.images) if images else []
    return JSONResponse({
        "verdict": live_row(verdict), "source": source, "grid": strip_grid(verdict),
        "threshold_set": verdict.threshold_set, "timings_ms": verdict.timings_ms,
        "patches": reject_patches(verdict, kept),
        "heatmaps": None if images is None else {"code": images.code, "problem": images.problem,
                                                  "with_patch": any("patch" in i for i in images.images.values())},
    })


async def api_image(request: Request) -> Response:
    hmi, p = _hmi(request), request.path_params
    kind = p["kind"]
    if kind not in IMAGE_KINDS:
        return Response(status_code=404)
    kept = hmi.heatmaps.images(p["acquisition_id"])
    png = kept.images.get((p["frame"], p["vial"], p["region"]), {}).get(kind)
    if png is None:
        return Response(kept.problem or "no such image", status_code=404 if kept.code in ("OK", "NOT_FOUND") else 503)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


async def api_model(request: Request) -> JSONResponse:
    hmi = _hmi(request)
    versions = published_versions(hmi.config.model_repository)
    recent = hmi.store.recent(1)
    serving = recent[0].model_version if recent else None
    shown = serving if serving is not None else (versions[-1] if versions else None)
    out: dict[str, Any] = {"serving": serving, "published": versions, "shown": shown}
    if shown is not None:
        info = version_info(hmi.config.model_repository, shown)
        try:
            first = hmi.audit.first_verdict_ms(shown)
        except AuditUnavailable as exc:
            first, out["audit_problem"] = None, str(exc)
        out.update({"version": shown, "thresholds": info.thresholds, "serving_set": info.serving,
                    "run_policy": info.run_policy, "profile": info.profile, "patch_size": info.patch_size,
                    "created_utc": info.created_utc, "first_verdict_unix_ms": first,
                    "report_html": info.report_html, "roc_url": f"/api/model/{shown}/roc.png" if info.has_roc else None,
                    "problems": info.problems})
    return JSONResponse(out)


async def api_roc(request: Request) -> Response:
    path = roc_path(_hmi(request).config.model_repository, request.path_params["version"])
    return FileResponse(path, media_type="image/png") if path else Response(status_code=404)


async def api_audit(request: Request) -> JSONResponse:
    hmi, acquisition_id = _hmi(request), request.path_params["acquisition_id"]
    try:
        record = hmi.audit.record(acquisition_id)
    except AuditUnavailable as exc:
        return JSONResponse({"problem": str(exc)}, status_code=503)
    if record is None:
        return JSONResponse({"problem": f"acquisition '{acquisition_id}' is not in the audit store"}, status_code=404)
    return JSONResponse({"record": record, "text": pretty(record)})


async def api_audit_recent(request: Request) -> JSONResponse:
    try:
        return JSONResponse(_hmi(request).audit.recent(20))
    except AuditUnavailable as exc:
        return JSONResponse({"problem": str(exc)}, status_code=503)


async def api_chain(request: Request) -> JSONResponse:
    try:
        status = _hmi(request).audit.chain()
    except AuditUnavailable as exc:
        return JSONResponse({"problem": str(exc)}, status_code=503)
    return JSONResponse(vars(status))


async def metrics(request: Request) -> Response:
    """Prometheus exposition at /metrics itself (no redirect to /metrics/ for the scraper to follow)."""
    return Response(generate_latest(_hmi(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> JSONResponse:
    """The HMI is up (it answers even while the stack behind it is down: it then says so)."""
    status = _hmi(request).store.status
    return JSONResponse({"ok": True, "stack_connected": status.connected, "reason": status.reason})


def create_app(hmi: Hmi, start: bool = True) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if start:
            hmi.start()
        try:
            yield
        finally:
            if start:
                hmi.stop()

    routes = [
        Route("/", home), Route("/live", live_page), Route("/products", products_page), Route("/model", model_page),
        Route("/audit", audit_page), Route("/acquisitions/{acquisition_id}", acquisition_page),
        Route("/events", events),
        Route("/api/summary", api_summary), Route("/api/verdicts", api_verdicts),
        Route("/api/products", api_products), Route("/api/model", api_model),
        Route("/api/model/{version:int}/roc.png", api_roc),
        Route("/api/acquisitions/{acquisition_id}", api_acquisition),
        Route("/api/acquisitions/{acquisition_id}/images/{frame:int}/{vial:int}/{region:int}/{kind}.png", api_image),
        Route("/api/audit/recent", api_audit_recent), Route("/api/audit/chain", api_chain),
        Route("/api/audit/{acquisition_id}", api_audit),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hmi = hmi
    return app

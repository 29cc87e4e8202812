"""The JSON API under `/api`: list, submit, follow, stop, resume, report and export studies. Every route needs the
server's token once one is set; errors are JSON (`detail` holds the lines the command line prints)."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse
from starlette.background import BackgroundTask

from sweep.catalog import StudySummary, list_studies, resume_study, stop_study, summarize, trial_summary
from sweep.service.security import require_token
from sweep.service.settings import ServiceSettings, settings_of
from sweep.storage import has_study_tables, load_study

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)], tags=["studies"])
Settings = Annotated[ServiceSettings, Depends(settings_of)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": what, "content": {"application/json": {"example": {"detail": "...", "errors": []}}}}
    for code, what in (
        (400, "bad input: `detail` holds every problem, one per line, as the command line prints them"),
        (401, "the server's token is missing or wrong"),
        (404, "no such study (or trial)"),
        (422, "a path, query or form value of the wrong type (`trial=abc`): `errors` names each one"),
    )
}


def _url(request: Request) -> str:
    url: str = request.app.state.settings.storage_url
    return url


def current_studies(request: Request) -> list[StudySummary]:
    """Every study in the server's store (the API's list, and the rows the studies page is first drawn with)."""
    state = request.app.state
    if not state.store_ready:  # checked until the first study arrives (`sweep serve` creates the tables itself)
        if not has_study_tables(_url(request)):
            return []  # a fresh store: nothing submitted yet
        state.store_ready = True
    return list_studies(_url(request))


@router.get("/studies", summary="Every study in the store: state, progress, best value, workers", responses=ERRORS)
def studies(request: Request) -> list[dict[str, Any]]:
    return [s.as_dict() for s in current_studies(request)]


_importance_lock = threading.Lock()


def importance_of(request: Request, study: Any, finished: int) -> dict[str, Any]:
    """{"importance": {param: share} (fANOVA), "importance_note": why there is none}; cached per study and number of
    finished trials (the live page asks every few seconds)."""
    from reports.importance import collect_importances, importance_caveats, importance_problem
    from reports.trials import completed

    cache: dict[str, tuple[int, dict[str, Any]]] = request.app.state.importance_cache  # study -> (finished, answer)
    with _importance_lock:
        cached = cache.get(study.study_name)
        if cached is not None and cached[0] == finished:
            return cached[1]
    problem = importance_problem(study)
    if problem is not None:
        result: dict[str, Any] = {"importance": None, "importance_note": problem, "importance_caveats": []}
    else:
        data = collect_importances(study)
        evaluator, shares = next(iter(data.importances.items()), (None, None))
        note = None if shares else "; ".join(f"{k}: {v}" for k, v in data.errors.items()) or "no importances"
        result = {"importance": shares, "importance_note": note, "importance_evaluator": evaluator,
                  "importance_caveats": importance_caveats(len(completed(study)), data) if shares else []}
    with _importance_lock:
        cache[study.study_name] = (finished, result)
    return result


@router.get(
    "/studies/{name}",
    summary="One study: summary, trials (with per-evaluation values), best trial, data report, importance",
    responses=ERRORS,
)
def study(name: str, request: Request) -> dict[str, Any]:
    from record import read_study

    loaded = load_study(name, _url(request))
    summary = summarize(loaded)
    trials = [trial_summary(t) for t in loaded.get_trials(deepcopy=False)]
    best = next((t for t in trials if t["number"] == summary.best_trial), None)
    return {
        "study": summary.as_dict(),
        "trials": trials,
        "best_trial": best,
        "data_report": read_study(loaded).data_report,
        **importance_of(request, loaded, summary.finished),
    }


@router.post(
    "/studies",
    status_code=201,
    summary="Submit a study: a spec (YAML or JSON) and its data (an upload, or a path under a data root)",
    responses={
        **ERRORS,
        409: {"description": "a study of that name already exists"},
        413: {"description": "an upload is over the server's limit"},
    },
)
def submit(
    settings: Settings,
    request: Request,
    spec: Annotated[UploadFile | None, File(description="The study spec (YAML or JSON).")] = None,
    spec_text: Annotated[str | None, Form(description="The study spec as text (instead of `spec`).")] = None,
    data: Annotated[UploadFile | None, File(description="The training data file.")] = None,
    data_path: Annotated[str | None, Form(description="The training data: a path under a data root.")] = None,
    validation: Annotated[UploadFile | None, File(description="The validation data file (optional).")] = None,
    validation_path: Annotated[str | None, Form(description="The validation data under a data root.")] = None,
    priority: Annotated[int | None, Form(ge=-1000, le=1000,
                                         description="Workers take higher priorities first (default 0).")] = None,
) -> dict[str, Any]:
    from sweep.errors import SweepError
    from sweep.service.submissions import SubmissionRequest, Upload, read_spec_upload
    from sweep.service.submissions import submit as create

    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if spec is None and spec_text is None and kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        sent = kind or "a body without a content type"
        raise SweepError([("spec", f"send the study as a form (multipart/form-data: `spec` or `spec_text`, `data` "
                                   f"or `data_path`, ...), not as {sent}")])  # fmt: skip
    if (spec is None) == (spec_text is None):
        raise SweepError([("spec", "give the study spec as an uploaded file (`spec`) or as text (`spec_text`), "
                                   "exactly one of them")])  # fmt: skip
    raw = read_spec_upload(spec.file) if spec is not None else (spec_text or "").encode("utf-8")

    def upload(file: UploadFile | None) -> Upload | None:
        return Upload(file.filename or "", file.file) if file is not None else None

    name = create(
        SubmissionRequest(spec_text=raw, data=upload(data), data_path=data_path or None,
                          validation=upload(validation), validation_path=validation_path or None, priority=priority),
        settings,
    )  # fmt: skip
    return summarize(load_study(name, settings.storage_url)).as_dict()


@router.post("/studies/{name}/stop", summary="Stop a study: no new trial starts; running trials end and are "
             "kept for a retry", responses={**ERRORS, 409: {"description": "the study is finished: nothing to stop"}})
def stop(name: str, request: Request) -> dict[str, Any]:
    return stop_study(name, _url(request), by="a user of the service").as_dict()


@router.post("/studies/{name}/resume", summary="Resume a stopped (or failed) study; with `n_trials`, raise its budget "
             "(a finished study continues too)",
             responses={**ERRORS, 409: {"description": "the study is finished: give n_trials to raise its budget"}})
def resume(
    name: str,
    request: Request,
    n_trials: Annotated[int | None, Form(ge=1, description="The search's budget from now on (more than "
                                         "its finished trials; re-evaluation runs come on top).")] = None,
) -> dict[str, Any]:
    from sweep.errors import SweepError

    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if n_trials is None and (kind == "application/json" or "n_trials" in request.query_params):
        # read as a plain resume, the budget unchanged: said instead
        raise SweepError([("n_trials", "send it as a form field (multipart/form-data or "
                                       "application/x-www-form-urlencoded), not in JSON or the query string")])
    return resume_study(name, _url(request), n_trials, field="n_trials").as_dict()


@router.get(
    "/studies/{name}/report",
    summary="The study's HTML report (the same page as `sweep report NAME`), built from the store as it is now",
    response_class=HTMLResponse,
    responses=ERRORS,
)
def report(name: str, request: Request) -> HTMLResponse:
    from reports import write_report

    loaded = load_study(name, _url(request))
    folder = Path(tempfile.mkdtemp(prefix="report-"))
    try:
        out = folder / "report.html"
        write_report([loaded], out)
        return HTMLResponse(out.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@router.get(
    "/studies/{name}/export",
    summary="The best trial (or `trial`, or the best by mean over seeds) as a zip of a Hugging Face model folder",
    response_class=FileResponse,
    responses={**ERRORS, 200: {"content": {"application/zip": {}}, "description": "the archive"}},
)
def export(
    name: str,
    settings: Settings,
    trial: int | None = None,
    by: Literal["value", "mean"] = "value",
) -> FileResponse:
    from sweep.service.archive import export_archive

    archive = export_archive(name, settings, trial=trial, by=by)
    return FileResponse(
        archive.path,
        media_type="application/zip",
        filename=archive.filename,
        background=BackgroundTask(shutil.rmtree, archive.folder, ignore_errors=True),
    )

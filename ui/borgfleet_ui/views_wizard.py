"""The backup wizard (/backup-jobs/new): client → what → where → when → keep → passphrase, then the
backup job is created and its client's setup queued (the repository is made), ending on that job.

Each step is a server-rendered form posting to itself (static/wizard.js only adds the next run times
as the schedule is typed). The choices so far live in the login session (never the passphrase: it
is generated on the last page and travels only in that form's body). Every step is checked by
fleet.backup_jobs.check_draft, the checks create_backup_job makes, so a step refuses what the API
would refuse, with the same message."""
from zoneinfo import available_timezones

from flask import abort, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _, lazy_gettext as _l

from . import fleet, secret_store
from .auth import role
from .contract import contract
from .db import get_db, get_redis
from .fleet import wizard as wz
from .forms import retention_of
from .views import bp

STEPS = (("client", _l("Client")), ("what", _l("What")), ("where", _l("Where")), ("when", _l("When")),
         ("keep", _l("Keep")), ("passphrase", _l("Passphrase")))
NAMES = [s for s, _ in STEPS]
KEY = "bj_wizard"
ACTIVE = ("queued", "waiting", "running")


def _state():
    return dict(session.get(KEY) or {})


def _save(state):
    session[KEY] = state


def _reachable(state):
    """The steps done so far decide how far the wizard may go: the first step not done yet."""
    done = state.get("done", [])
    for name in NAMES:
        if name not in done:
            return name
    return NAMES[-1]


def _detected(db, client_id):
    caps = fleet.facts.capabilities(db, client_id)
    return caps, fleet.facts.databases(caps["data"] if caps else None)


def _context(db, step, state):
    """What a step's template shows, from the state (with the fields just refused, if any)."""
    ctx = {"step": step, "steps": STEPS, "state": state, "reachable": _reachable(state),
           "done": state.get("done", [])}
    client = fleet.backup_jobs.get_client(db, state["client_id"]) if state.get("client_id") else None
    ctx["client"] = client
    if step == "client":
        ctx["clients"] = fleet.servers.list_servers(db, role="client", limit=200)
        ctx["names"] = {s["id"]: s["name"] for s in fleet.servers.list_servers(db, role="backup_server", limit=200)}
    elif step == "what":
        ctx["caps"], ctx["databases"] = _detected(db, client["id"])
        ctx["path_presets"], ctx["exclude_presets"], ctx["methods"] = wz.PATH_PRESETS, wz.EXCLUDE_PRESETS, wz.METHODS
        job_id = state.get("detect_job")
        ctx["detect"] = fleet.runs.get_job(db, job_id) if job_id else None
    elif step == "where":
        if client["backup_server_id"]:
            ctx["backup_server"] = fleet.servers.get_server(db, client["backup_server_id"])
            ctx["pools"] = fleet.pools.list_pools(db, client["backup_server_id"])
            ctx["usage"] = {p["name"]: p for p in fleet.pools.usage(db, client["backup_server_id"])}
        ctx["resolved"] = fleet.backup_jobs.check_draft(db, wz.draft(state))
    elif step == "when":
        ctx["schedule_presets"] = wz.SCHEDULE_PRESETS
        ctx["zones"] = sorted(available_timezones())
        if "schedule_preset" not in state:   # first visit: the default preset, shown with its runs
            state = ctx["state"] = dict(state, schedule_preset=wz.DEFAULT_SCHEDULE, timezone="UTC",
                                        schedule=wz.SCHEDULE_PRESETS[wz.DEFAULT_SCHEDULE][1])
        ctx["runs"], ctx["runs_error"] = _next_runs(state.get("schedule"), state.get("timezone"))
    elif step == "keep":
        ctx["retention_presets"], ctx["retention_keys"] = wz.RETENTION_PRESETS, contract.RETENTION_KEYS
    elif step == "passphrase":
        ctx["retention_keys"] = contract.RETENTION_KEYS
        ctx["resolved"] = fleet.backup_jobs.check_draft(db, wz.draft(state))
        ctx["schedule_label"] = next((label for label, cron in wz.SCHEDULE_PRESETS.values()
                                      if cron == state.get("schedule")), None)
    return ctx


def _next_runs(cron, tz):
    """The next five runs of a schedule as the scheduler computes them, or (None, why not)."""
    if not cron:
        return None, None
    try:
        return wz.run_times(cron, tz or "UTC"), None
    except fleet.Invalid as e:
        return None, str(e)


def _render(step, state, error=None, code=200, **extra):
    ctx = _context(get_db(), step, state)
    ctx.update(extra)
    return render_template("backup_wizard.html", error=error, **ctx), code


@bp.get("/backup-jobs/new")
@role("operator")
def bj_wizard_start():
    """A new wizard (the choices of an earlier one dropped); ?client_id= starts with that client chosen."""
    state = {}
    cid = request.args.get("client_id", type=int)
    if cid:
        fleet.backup_jobs.get_client(get_db(), cid)
        state = {"client_id": cid, "done": ["client"]}
    _save(state)
    return redirect(url_for("pages.bj_wizard", step=_reachable(state)))


@bp.get("/backup-jobs/new/<step>")
@role("operator")
def bj_wizard(step):
    if step not in NAMES:
        abort(404)
    state = _state()
    reachable = _reachable(state)
    if NAMES.index(step) > NAMES.index(reachable):
        return redirect(url_for("pages.bj_wizard", step=reachable))
    extra = {}
    if step == "passphrase":
        # A new one each time the page is shown: it is seen once and never stored until created.
        extra["generated"] = wz.generate_passphrase()
    return _render(step, state, **extra)


def _form_what(db, state, f, suggest=True):
    """The what step's fields into the state: paths (presets and typed) with excludes, or a detected database.
    An empty name, or the one suggested before, is suggested from the choice (unless not suggest)."""
    name = f.get("name", "").strip()
    state.update(kind=f.get("kind", "paths"), name="" if name == state.get("suggested") else name,
                 path_presets=f.getlist("path_preset"), paths_text=f.get("paths", ""),
                 exclude_presets=f.getlist("exclude_preset"), exclude_text=f.get("exclude", ""),
                 database_key=f.get("database"), method=f.get("method", "auto"))
    database = None
    if state["kind"] == "database":
        _, found = _detected(db, state["client_id"])
        database = next((d for d in found if d["key"] == state["database_key"]), None)
        if database is None:
            raise fleet.Invalid(_("choose one of the databases detected on the client (Reload capabilities"
                                  " if it is not listed)"))
        state.update(paths=[], exclude=[], databases=[wz.database_entry(database, state["method"])])
    else:
        state.update(databases=[], paths=wz.with_lines(wz.chosen(wz.PATH_PRESETS, state["path_presets"]),
                                                       state["paths_text"]),
                     exclude=wz.with_lines(wz.chosen(wz.EXCLUDE_PRESETS, state["exclude_presets"]),
                                           state["exclude_text"]))
    if not state["name"] and suggest:
        taken = {b["name"] for b in fleet.backup_jobs.list_backup_jobs(db, client_id=state["client_id"], limit=200)}
        state["name"] = state["suggested"] = wz.suggest_name(database, taken)


def _form_step(db, step, state, f):
    """The fields of one step into the state (checked after by check_draft)."""
    if step == "client":
        client = fleet.backup_jobs.get_client(db, f.get("client_id", type=int))
        if client["id"] != state.get("client_id"):
            state.clear()   # another client: its databases, pools and names differ
        state["client_id"] = client["id"]
    elif step == "what":
        _form_what(db, state, f)
    elif step == "where":
        state["pool_id"] = f.get("pool_id", type=int)
    elif step == "when":
        preset = f.get("schedule_preset", wz.DEFAULT_SCHEDULE)
        state["schedule_preset"] = preset
        state["schedule"] = f.get("cron", "").strip() if preset == "custom" else \
            (wz.SCHEDULE_PRESETS.get(preset) or (None, None))[1]
        state["timezone"] = f.get("timezone", "").strip() or "UTC"
    elif step == "keep":
        preset = f.get("retention_preset", wz.DEFAULT_RETENTION)
        state["retention_preset"] = preset
        if preset == "custom":
            # The fields as typed, read as the backup job page reads them; the contract judges them.
            state["retention"] = retention_of(request.form)
        else:
            state["retention"] = (wz.RETENTION_PRESETS.get(preset) or (None, None))[1]


@bp.post("/backup-jobs/new/<step>")
@role("operator")
def bj_wizard_post(step):
    if step not in NAMES[:-1]:
        abort(404)
    db, state = get_db(), _state()
    if step != "client" and not state.get("client_id"):
        return redirect(url_for("pages.bj_wizard_start"))
    try:
        _form_step(db, step, state, request.form)
        if step == "when" and request.form.get("action") == "preview":
            # Without JavaScript: the next runs of what was typed, nothing kept yet.
            return _render(step, state)
        if step != "client":
            fleet.backup_jobs.check_draft(db, wz.draft(state))
    except fleet.Invalid as e:
        return _render(step, state, error=str(e), code=400)
    done = [s for s in state.get("done", []) if NAMES.index(s) < NAMES.index(step)]
    state["done"] = done + [step]
    _save(state)
    return redirect(url_for("pages.bj_wizard", step=NAMES[NAMES.index(step) + 1]))


@bp.post("/backup-jobs/new/what/reload")
@role("operator")
def bj_wizard_reload():
    """Reload capabilities: queue the detection on the client and come back to the what step, with
    what was typed there kept; the step shows the detection until it ends."""
    db, state = get_db(), _state()
    if not state.get("client_id"):
        return redirect(url_for("pages.bj_wizard_start"))
    try:
        _form_what(db, state, request.form, suggest=False)
    except fleet.Invalid:
        pass   # not chosen yet: the database list is what is being reloaded
    state["detect_job"] = fleet.facts.detect(db, get_redis(), state["client_id"], g.user["username"])
    _save(state)
    return redirect(url_for("pages.bj_wizard", step="what", _anchor="databases"))


@bp.post("/backup-jobs/new/create")
@role("operator")
def bj_wizard_create():
    db, state, f = get_db(), _state(), request.form
    if _reachable(state) != "passphrase":
        return redirect(url_for("pages.bj_wizard", step=_reachable(state)))
    generated = f.get("generated", "")
    own = f.get("mode") == "own"
    passphrase = f.get("own", "") if own else generated
    error = None
    if own and passphrase != f.get("own2", ""):
        error = _("the two passphrases typed differ")
    elif not f.get("stored"):
        error = _("tick “I have stored the passphrase”: without it the backups cannot be read")
    if error is None:
        try:
            bj, setup_job = fleet.backup_jobs.create_and_set_up(
                db, get_redis(), dict(wz.draft(state), passphrase=passphrase), g.user["username"])
        except (fleet.Invalid, secret_store.SecretError) as e:
            error = str(e)
    if error:
        # The same generated passphrase again (it may have been stored already); a typed one is not echoed.
        return _render("passphrase", state, error=error, code=400, own=own,
                       generated=generated or wz.generate_passphrase())
    session.pop(KEY, None)
    name = bj["client_name"] + "/" + bj["name"]
    flash(_("Backup job %(name)s created: this setup creates its repository.", name=name))
    flash(setup_job, "queued")
    return redirect(url_for("pages.job", job_id=setup_job))

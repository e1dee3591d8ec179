"""BorgFleet service: Flask app factory."""
import datetime
import decimal
import secrets

from flask import Flask, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import api, auth, db, i18n, look, metrics, views, views_backup_job
# The restore, recovery, notification, pool and server areas and the wizards add their routes to
# api.bp and views.bp.
from . import (api_notifications, api_recovery, api_restore, views_notifications, views_pools,  # noqa: F401
               views_edit, views_recovery, views_restore, views_server_wizard, views_servers, views_wizard)
from .config import load_config, web_config

# The pages load only their own static files: no inline script or style, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
       " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class JSONProvider(DefaultJSONProvider):
    @staticmethod
    def default(o):
        if isinstance(o, datetime.datetime):
            return o.isoformat() + ("" if o.tzinfo else "Z")   # DB times are UTC
        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        return DefaultJSONProvider.default(o)


def create_app(test_config=None):
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.config.update(load_config())
    app.config.update(web_config())
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        # Sessions then last only as long as this process; production sets BORGFLEET_SECRET_KEY.
        app.config["SECRET_KEY"] = secrets.token_hex(32)
    # Behind TLS (production) BORGFLEET_SECURE_COOKIES=1 so the session never travels in clear.
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=app.config["SECURE_COOKIES"],
                      PERMANENT_SESSION_LIFETIME=datetime.timedelta(minutes=app.config["SESSION_MINUTES"]),
                      SESSION_REFRESH_EACH_REQUEST=False)
    if app.config["TRUSTED_PROXIES"]:
        # The client's address (per-address login limit) and scheme as the proxy saw them.
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)
    db.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(views_backup_job.bp)
    app.register_blueprint(metrics.bp)
    look.init_app(app)
    i18n.init_app(app)
    app.before_request(auth.enforce)
    app.jinja_env.globals["csrf_token"] = auth.csrf_token

    @app.after_request
    def _security_headers(resp):
        h = resp.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "same-origin")
        if app.config["SESSION_COOKIE_SECURE"]:
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        return resp

    @app.errorhandler(HTTPException)
    def _error(e):
        if e.code is None or e.code < 400:
            return e
        title, text = i18n.http_error(e)
        if request.path.startswith("/api/"):
            return jsonify(error=text), e.code
        # Rendered by Jinja (autoescaped): whatever a description echoes stays text.
        return render_template("message.html", title=title, message=text), e.code

    return app

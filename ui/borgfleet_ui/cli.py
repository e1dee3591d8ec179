"""`borgfleet-ui` command line (also `python -m borgfleet_ui`)."""
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import click

from . import db as dbm
from . import queue as q
from .config import load_config


@click.group()
def cli():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


@cli.group("db")
def db_group():
    """Database commands."""


@db_group.command("upgrade")
def db_upgrade():
    """Create the database if missing and apply pending migrations."""
    from . import secret_store
    cfg = load_config()
    try:
        if secret_store.ensure_key(cfg):
            click.echo(f"created the secret key file {secret_store.key_file(cfg)}: back it up apart from the database")
    except secret_store.SecretError as e:
        raise click.ClickException(str(e)) from None
    dbm.create_database(cfg)
    conn = dbm.connect(cfg)
    try:
        applied = dbm.upgrade(conn)
        # Plain-text secrets (rows from before encryption at rest) are encrypted on every upgrade.
        encrypted = secret_store.encrypt_plaintext(cfg, conn)
    except secret_store.SecretError as e:
        raise click.ClickException(str(e)) from None
    finally:
        conn.close()
    click.echo(f"applied migrations: {applied}" if applied else "database is up to date")
    if encrypted:
        click.echo(f"encrypted {encrypted} plain-text secret(s)")


@cli.command("rotate-key")
def rotate_key():
    """Re-encrypt every stored secret with a new key and drop the old key from the key file."""
    from . import secret_store
    cfg = load_config()
    conn = dbm.connect(cfg)
    try:
        n = secret_store.rotate(cfg, conn)
    except secret_store.SecretError as e:
        raise click.ClickException(str(e)) from None
    finally:
        conn.close()
    click.echo(f"re-encrypted {n} secret(s) with a new key in {secret_store.key_file(cfg)}; "
               "back up the new key file now (the old key no longer decrypts them)")


@cli.command("create-admin")
@click.option("--username", default="admin", show_default=True)
@click.option("--if-missing", is_flag=True, help="Do nothing when any admin exists.")
def create_admin(username, if_missing):
    """Create an admin user and print its generated password (once)."""
    from .auth import create_user
    conn = dbm.connect(load_config())
    try:
        if if_missing and dbm.query(conn, "SELECT id FROM users WHERE role='admin' LIMIT 1"):
            return
        if dbm.query(conn, "SELECT id FROM users WHERE username=%s", (username,)):
            raise click.ClickException(f"user {username} exists")
        password = create_user(conn, username, "admin")
    finally:
        conn.close()
    click.echo(f"created admin user {username!r} with password: {password}")
    click.echo("(shown once; it is stored only as a hash)")


def _user_id(conn, username):
    row = dbm.query(conn, "SELECT id FROM users WHERE username=%s", (username,), one=True)
    if row is None:
        raise click.ClickException(f"no user {username}")
    return row["id"]


@cli.command("set-password")
@click.argument("username")
@click.option("--generate", is_flag=True, help="Generate a password and print it once instead of prompting.")
def set_password_cmd(username, generate):
    """Set a user's password (prompted, never in argv); its login sessions end."""
    from .auth import set_password
    from .fleet import Invalid
    password = secrets.token_urlsafe(15) if generate else \
        click.prompt("New password", hide_input=True, confirmation_prompt=True)
    conn = dbm.connect(load_config())
    try:
        set_password(conn, _user_id(conn, username), password)
    except Invalid as e:
        raise click.ClickException(str(e)) from None
    finally:
        conn.close()
    click.echo(f"new password of {username!r}: {password}" if generate else f"password of {username!r} changed")
    click.echo("its login sessions have ended")


@cli.command("disable-user")
@click.argument("username")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
def disable_user(username, enable):
    """Disable a user (its sessions end, its tokens are refused) or, with --enable, enable it."""
    from .auth import set_disabled
    conn = dbm.connect(load_config())
    try:
        set_disabled(conn, _user_id(conn, username), not enable)
    finally:
        conn.close()
    click.echo(f"user {username!r} {'enabled' if enable else 'disabled; its sessions have ended'}")


@cli.command()
@click.option("--instance", default="1", show_default=True, help="Worker number on this host.")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
def worker(instance, burst):
    """Run one RQ worker on all BorgFleet queues."""
    from rq import Worker
    from .workers import LOG_DATE_FORMAT, ProcessReporter, worker_name
    cfg = load_config()
    r = dbm.connect_redis(cfg)
    conn = dbm.connect(cfg)
    try:
        # A worker that died earlier may have left jobs "running": settle them first.
        for job_id in q.sweep_abandoned(conn, r):
            click.echo(f"marked abandoned: {job_id}")
        from . import jobs  # imported once here so each forked job starts without the import cost
        for path in jobs.sweep_run_dirs(cfg, conn):
            click.echo(f"removed the run directory of a finished job: {path}")
    finally:
        conn.close()
    name = worker_name(instance)
    # A previous process of the same instance killed hard leaves its name registered for a while.
    name = name if not _name_taken(r, name) else f"{name}-{os.getpid()}"
    reporter = ProcessReporter(r, name, worker=True)
    reporter.report()
    reporter.start()
    # UTC timestamps with the date: the workers page filters the log by time (workers.lines_since).
    logging.Formatter.converter = time.gmtime
    Worker(q.queues(r), connection=r, serializer=q.SERIALIZER, name=name).work(
        burst=burst, with_scheduler=True, date_format=LOG_DATE_FORMAT)


def _name_taken(r, name):
    from rq import Worker
    return any(w.name == name for w in Worker.all(connection=r, serializer=q.SERIALIZER))


@cli.command()
def scheduler():
    """Run the scheduler (a second instance stays idle until the first stops)."""
    from .scheduler import Scheduler

    def _term(*_):
        raise KeyboardInterrupt   # leaves the sleep at once; run_forever releases the lock
    signal.signal(signal.SIGTERM, _term)
    from .workers import SCHEDULER_NAME, ProcessReporter
    cfg = load_config()
    reporter = ProcessReporter(dbm.connect_redis(cfg), SCHEDULER_NAME.format(host=socket.gethostname()))
    reporter.report()
    reporter.start()
    try:
        Scheduler(cfg).run_forever()
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5080, show_default=True)
def web(host, port):
    """Run the web app with the development server (use gunicorn in production)."""
    from . import create_app
    create_app().run(host=host, port=port)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5080, show_default=True)
@click.option("--workers", "nworkers", default=2, show_default=True)
def serve(host, port, nworkers):
    """Set up what is missing, then run web + scheduler + N workers in the foreground (Ctrl-C stops all)."""
    cfg = load_config()
    ctx = click.get_current_context()
    ctx.invoke(db_upgrade)
    ctx.invoke(create_admin, username="admin", if_missing=True)
    instance = os.path.join(os.path.dirname(cfg["RUN_DIR"]))
    os.makedirs(instance, exist_ok=True)
    logdir = os.path.join(instance, "logs")
    os.makedirs(logdir, exist_ok=True)
    env = dict(os.environ, BORGFLEET_LOG_DIR=logdir)
    if not env.get("BORGFLEET_SECRET_KEY"):
        keyfile = os.path.join(instance, "secret_key")
        if not os.path.exists(keyfile):
            with open(os.open(keyfile, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(secrets.token_hex(32))
        with open(keyfile) as f:
            env["BORGFLEET_SECRET_KEY"] = f.read().strip()
    me = [sys.executable, "-m", "borgfleet_ui"]
    procs = [subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-b", f"{host}:{port}",
                               "-w", "2", "--threads", "4", "--access-logfile", "-", "borgfleet_ui:create_app()"],
                              env=env),
             subprocess.Popen(me + ["scheduler"], env=env)]
    supervisor = Supervisor(dbm.connect_redis(cfg), me, env, logdir, nworkers)
    click.echo(f"BorgFleet is serving on http://{host}:{port}  ({nworkers} workers, logs in {logdir}; Ctrl-C stops)")
    try:
        while all(p.poll() is None for p in procs):
            supervisor.step()
            time.sleep(1)
        click.echo("a component exited; stopping the others")
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop_all()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


class Supervisor:
    """The workers of `serve`: each instance kept in the state the workers page asks for (Redis hash
    workers.SUPERVISOR_DESIRED of this host: running, stopped, restart); a worker that exits while
    wanted is started again. Stopping is RQ's warm shutdown (SIGTERM: the current job finishes)."""

    def __init__(self, r, me, env, logdir, nworkers):
        from .workers import SUPERVISOR_ALIVE, SUPERVISOR_DESIRED
        self.r, self.me, self.env, self.logdir = r, me, env, logdir
        self.alive_key = SUPERVISOR_ALIVE.format(host=socket.gethostname())
        self.desired_key = SUPERVISOR_DESIRED.format(host=socket.gethostname())
        self.procs = {str(i): None for i in range(1, nworkers + 1)}
        self.r.delete(self.desired_key)
        self.r.hset(self.desired_key, mapping={i: "running" for i in self.procs})

    def step(self):
        try:
            self.r.set(self.alive_key, os.getpid(), ex=10)
            desired = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                       for k, v in self.r.hgetall(self.desired_key).items()}
        except Exception:   # Redis restarting: keep what runs
            return
        for instance, proc in self.procs.items():
            want = desired.get(instance, "running")
            alive = proc is not None and proc.poll() is None
            if want == "restart":
                # Stopped once (warm: the current job finishes), started again when it has exited.
                self.r.hset(self.desired_key, instance, "running")
                self._terminate(proc)
                continue
            if want == "running" and not alive:
                out = open(os.path.join(self.logdir, f"worker-{instance}.log"), "a")
                self.procs[instance] = subprocess.Popen(self.me + ["worker", "--instance", instance], env=self.env,
                                                        stdout=out, stderr=out)
            elif want == "stopped" and alive:
                self._terminate(proc)

    @staticmethod
    def _terminate(proc):
        """One SIGTERM only: RQ takes a second one as a cold shutdown that kills the running job."""
        if proc is not None and proc.poll() is None and not getattr(proc, "terminating", False):
            proc.terminate()
            proc.terminating = True

    def stop_all(self):
        self.r.delete(self.alive_key)
        for proc in self.procs.values():
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            if proc is not None:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


@cli.command("sudoers")
@click.option("--user", default="borgfleet", show_default=True, help="The account the web app runs as.")
@click.option("--workers", "nworkers", default=4, show_default=True, help="Worker instances 1..N.")
def sudoers_cmd(user, nworkers):
    """Print the sudoers snippet for the workers page (install with visudo -cf first)."""
    from .workers import sudoers
    click.echo(sudoers(user, range(1, nworkers + 1)), nl=False)


def main():
    cli()

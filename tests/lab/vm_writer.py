#!/usr/bin/python3
"""Write load, run INSIDE the lab VM (copied there by the tests): inserts rows one autocommit
statement at a time into table `load` of database `app` and logs, per row, when the insert was
sent and when its commit was confirmed - on the VM's clock, the clock of the freeze timestamps.

    vm_writer.py mariadb|postgresql LOG STOPFILE

Log lines: "<id> <sent epoch> <committed epoch>"; the last line is "done" (or "error <text>").
Payloads match tests/databases/dbs.py:payload(), which the test checks them with.
"""
import os
import subprocess
import sys
import time
import zlib

CLIENTS = {
    "mariadb": ["mariadb", "--batch", "--skip-column-names", "--unbuffered", "app"],
    "postgresql": ["runuser", "-u", "postgres", "--", "psql", "--no-psqlrc", "-q", "-A", "-t", "-d", "app"],
}
# `load` is a reserved word in MariaDB: qualified there.
TABLE = {"mariadb": "app.load", "postgresql": "load"}
# How each client echoes a marker once the INSERT before it has committed.
MARKER = {"mariadb": "SELECT 'ok-%d';\n", "postgresql": "\\echo ok-%d\n"}


def payload(i):
    return "row-%08d-%08x" % (i, zlib.crc32(b"%d" % i))


def main(engine, log_path, stop_path):
    client = subprocess.Popen(CLIENTS[engine], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    with open(log_path, "w", buffering=1) as log:
        try:
            i = 0
            while not os.path.exists(stop_path):
                i += 1
                sent = time.time()
                client.stdin.write("INSERT INTO %s (id, payload) VALUES (%d, '%s');\n" % (TABLE[engine], i, payload(i))
                                   + MARKER[engine] % i)
                client.stdin.flush()
                line = client.stdout.readline()
                if line.strip() != "ok-%d" % i:
                    raise RuntimeError("insert %d: client said %r" % (i, line))
                log.write("%d %.6f %.6f\n" % (i, sent, time.time()))
            log.write("done\n")
        except Exception as e:  # the test reads it from the log
            log.write("error %s\n" % e)
        finally:
            client.stdin.close()
            client.wait(30)


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""Stand-in for ansible-test's downloaded get-pip script (this machine reaches PyPI, not ansible's CI files).

ansible-test runs it as `python get_pip.py <pip install options> pip==X`: bootstrap pip from the
interpreter's own ensurepip, then install the requested pip from the package index."""
import subprocess
import sys

subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)

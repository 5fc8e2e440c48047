"""Serves one OpenStack WSGI application under gunicorn.

Usage: gunicorn ... 'wsgi:load("keystone.wsgi.api")' with this directory on --pythonpath.
The service modules parse sys.argv as oslo.config command-line options when they are imported,
so gunicorn's own arguments must not be visible to them; NSP_WSGI_ARGS are given instead.
"""

import importlib
import os
import shlex
import sys


def load(module):
    argv = sys.argv
    # Cinder reads its configuration files only from the command line it is given.
    sys.argv = [argv[0], *shlex.split(os.environ.get("NSP_WSGI_ARGS", ""))]
    try:
        return importlib.import_module(module).application
    finally:
        sys.argv = argv

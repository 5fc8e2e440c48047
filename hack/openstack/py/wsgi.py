"""Serves one OpenStack WSGI application under gunicorn.

Usage: gunicorn ... 'wsgi:load("keystone.wsgi.api")' with this directory on --pythonpath.
The service modules parse sys.argv as oslo.config command-line options when they are imported,
so gunicorn's own arguments must not be visible to them.
"""

import importlib
import sys


def load(module):
    argv = sys.argv
    sys.argv = [argv[0]]
    try:
        return importlib.import_module(module).application
    finally:
        sys.argv = argv

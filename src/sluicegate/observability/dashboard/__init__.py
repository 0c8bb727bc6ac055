"""The web dashboard at /ui: pages served by the gateway, charts drawn in the browser from JSON endpoints.

Why plain files and no front-end build: the dashboard is a handful of views over a few JSON endpoints. A
page shell, one stylesheet and two small scripts (vanilla JavaScript drawing SVG charts) ship inside the
Python package, need no Node toolchain to build or review, have no npm dependency to keep patched, work
offline and under a strict Content-Security-Policy (`'self'` only). When the UI outgrows this, the JSON
endpoints stay and a built front-end can replace the files in `static/`.
"""

"""The console's pages over HTTP (`http.py`), rendered by `pages.py`."""

"""Applications built on the sampling API (never on training): :mod:`latte.apps.demo`, the ``latte demo`` web
app. Gradio is an optional dependency (``pip install latte-video[demo]``), imported only when a page is built."""

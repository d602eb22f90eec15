"""``deskd view``: a local, read-only web viewer of run folders (a JSON API and one page).

:mod:`deskd.viewer.data` reads the folders (on demand, cached per run), :mod:`deskd.viewer.app`
serves them; the page is ``static/index.html``, charts drawn with the plotly.js bundled in
the plotly Python package (no CDN).
"""

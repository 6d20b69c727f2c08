"""The browser demo (``fbrs-jax demo``; needs the ``demo`` extra): ``session`` holds what one
browser session edits, ``server`` the web application around it, ``static`` the page."""

"""Routes by concern: the JSON API, the HTML pages, health and metrics."""

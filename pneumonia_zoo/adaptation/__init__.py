"""Adapting a registered package to a site from that site's own labelled images (no MLflow).

A layer between `package` and `evaluation`: it reads a parent package's frozen features through the
package's own runtime (what serving computes), fits on them with `stats`, and writes a new package with
`package`. It is not `training` (no network is trained, and `training` sits below `package`), and nothing
here evaluates: the result is judged like any version, by `evaluation` on other patients.
"""

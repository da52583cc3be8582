"""Servers to compare ours with: LitServe (a peer) and a naive load-per-request endpoint."""

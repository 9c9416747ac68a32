"""Preemptible sweeps: a search over configs shared by agents through files."""

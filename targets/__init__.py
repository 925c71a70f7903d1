"""Declarative target profiles (TOML), installed as package data ``diffusionad_edge.targets``."""

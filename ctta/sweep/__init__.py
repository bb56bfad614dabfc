"""Sweeps: sweep files of named studies (a protocol, its methods, scenarios, search and seeds),
launching every run they need on this machine or as Slurm job arrays, and the status of a
store."""

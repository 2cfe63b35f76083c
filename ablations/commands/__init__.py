"""The commands of ablations/run.py, one module each: sweep (the default), list, study, tune."""

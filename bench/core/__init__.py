"""The harness: what a run is (spec), the one training loop, optimizers, probes' interface,
records and claims. Knows nothing of particular variants, tasks or analyses."""

# On-device vitals. Each estimator gives a value only when its signal is
# usable, else None: an unusable signal never turns into a wrong number.
# Per-sample paths use small integers and preallocated arrays only.

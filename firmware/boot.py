# Runs first at every boot. Keep it tiny: the boot selector (factory code,
# never replaced by an update) picks the application slot before any of the
# application is imported; main.py then starts it.
import gc

import bootsel

bootsel.boot()
gc.collect()

# Runs first at every boot. Keep it tiny: a failure here leaves a board
# without its REPL-friendly main loop. The board seam and the app start in main.py.
import gc

gc.collect()

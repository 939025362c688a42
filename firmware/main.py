# The device's entry point: run the wearsafe application on this board. An
# application that fails resets the board rather than sit at a REPL: an
# update on trial is then rolled back by the next boot.
import sys

import board
import wearsafe.app

try:
    wearsafe.app.main()
except Exception as e:
    sys.print_exception(e)
    board.reset()

# The device's entry point: run the wearsafe application on this board.
# wearsafe.app.main() counts a crash and pauses before returning True;
# the board then resets (an update on trial is rolled back by the next boot). A failure
# to import the application at all still ends in a pause and a reset.
import sys

import board

try:
    import wearsafe.app

    failed = wearsafe.app.main()
except Exception as e:  # noqa: BLE001 - the application could not even start
    sys.print_exception(e)
    board.sleep_ms(10000)
    failed = True
if failed:
    board.reset()

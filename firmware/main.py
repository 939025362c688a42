# The device's entry point: run the wearsafe application on this board.
import wearsafe.app

wearsafe.app.main()

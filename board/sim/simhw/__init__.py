# Simulated hardware for the sim board.

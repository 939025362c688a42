"""Host tools for wearsafe: build, check, simulate and test the device firmware."""

# wearsafe: reference firmware for wearables that handle health data.
VERSION = "0.1.0"

# Standard algorithms built from the primitives stock MicroPython has on the
# esp32 and unix ports: cryptolib.aes (ECB=1, CBC=2) and hashlib.sha256.

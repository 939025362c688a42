# Correction of micropython-esp32-stubs: the published stub lists MODE_ECB,
# MODE_CBC and MODE_CTR, but the stock ESP32_GENERIC firmware (and the unix
# port) build cryptolib without MICROPY_PY_CRYPTOLIB_CONSTS and without CTR:
# only the numeric modes 1 (ECB) and 2 (CBC) exist.
from typing import overload

from _mpy_shed import AnyReadableBuf, AnyWritableBuf
from typing_extensions import TypeVar

_WB = TypeVar("_WB", bound=AnyWritableBuf)

class aes:
    def __init__(
        self, key: AnyReadableBuf, mode: int, IV: AnyReadableBuf | None = None, /
    ) -> None: ...
    @overload
    def encrypt(self, in_buf: AnyReadableBuf, /) -> bytes: ...
    @overload
    def encrypt(self, in_buf: AnyReadableBuf, out_buf: _WB, /) -> _WB: ...
    @overload
    def decrypt(self, in_buf: AnyReadableBuf, /) -> bytes: ...
    @overload
    def decrypt(self, in_buf: AnyReadableBuf, out_buf: _WB, /) -> _WB: ...

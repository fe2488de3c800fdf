# Stub of fastselectors._cffi_epoll, the out-of-line cffi module generated
# by csrc/ffi/build_ffi.py: its ``ffi`` (only the parts _kernel_cffi uses,
# with the C types it allocates) and ``lib`` (the cdef's constants and
# functions).  tests/test_typing.py checks lib's names against the built
# module.  Nothing here depends on cffi's own type stubs.

import sys
from typing import Literal, final, overload

# The C types, as the cdata objects that stand for them behave in Python.
# These classes exist for type checkers only (the module has no such names):
# _kernel_cffi imports them under TYPE_CHECKING, for its annotations.

@final
class EpollEventArray:
    """``struct epoll_event[n]`` (only passed to the C side)."""

    def __len__(self) -> int: ...

@final
class IntArray:
    """``int[n]`` or ``unsigned int[n]``."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> int: ...

@final
class Pollfd:
    """``struct pollfd``."""

    fd: int
    events: int
    revents: int

@final
class PollfdArray:
    """``struct pollfd[n]``."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> Pollfd: ...

@final
class _FFI:
    errno: int
    @overload
    def new(
        self, cdecl: Literal["struct epoll_event[]"], init: int, /
    ) -> EpollEventArray: ...
    @overload
    def new(self, cdecl: Literal["struct pollfd[]"], init: int, /) -> PollfdArray: ...
    @overload
    def new(self, cdecl: Literal["int[]", "unsigned int[]"], init: int, /) -> IntArray: ...
    def sizeof(self, cdecl: Literal["struct pollfd"], /) -> int: ...
    def memmove(self, dest: PollfdArray, src: PollfdArray, n: int) -> None: ...
    def unpack(self, cdata: IntArray, length: int, /) -> list[int]: ...

@final
class _Lib:
    POLLIN: int
    POLLOUT: int
    POLLPRI: int
    POLLERR: int
    POLLHUP: int
    POLLNVAL: int
    POLLRDHUP: int  # 0 where the OS has none
    def fs_poll_ready(
        self,
        fds: PollfdArray,
        nfds: int,
        ms: int,
        ns: int,
        fds_out: IntArray,
        revents_out: IntArray,
        /,
    ) -> int: ...
    if sys.platform == "linux":
        EPOLLIN: int
        EPOLLOUT: int
        EPOLLPRI: int
        EPOLLERR: int
        EPOLLHUP: int
        EPOLLRDHUP: int
        EPOLLET: int
        EPOLLONESHOT: int
        EPOLLEXCLUSIVE: int
        EPOLL_CTL_ADD: int
        EPOLL_CTL_MOD: int
        EPOLL_CTL_DEL: int
        def fs_epoll_ctl(self, epfd: int, op: int, fd: int, events: int, /) -> int: ...
        def fs_epoll_ready(
            self,
            epfd: int,
            events: EpollEventArray,
            maxevents: int,
            ms: int,
            ns: int,
            fds_out: IntArray,
            revents_out: IntArray,
            /,
        ) -> int: ...
        def fs_pwait2_probe(self, epfd: int, /) -> int: ...

ffi: _FFI
lib: _Lib

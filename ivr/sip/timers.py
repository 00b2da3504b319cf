"""RFC 3261 timer values (§17.1.1.1, Table 4) shared by transactions and the UAS core."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1 (RTT estimate), T2 (retransmit cap), T4 (network lifetime) and Timer D, in seconds.

    ``timeout`` is 64*T1: Timers B, F, H, J, L and M, and the 2xx give-up.
    Timers that RFC 3261 sets to zero on reliable transports are never started:
    the transaction terminates at once instead.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0
    timeout: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.t1 > 0:
            raise ValueError(f"T1 must be positive, got {self.t1}")
        if not self.t2 >= self.t1:
            raise ValueError(f"T2 ({self.t2}) must not be below T1 ({self.t1})")
        if not self.t4 > 0:
            raise ValueError(f"T4 must be positive, got {self.t4}")
        if not self.d >= 0:
            raise ValueError(f"Timer D must not be negative, got {self.d}")
        object.__setattr__(self, "timeout", 64 * self.t1)


DEFAULT_TIMERS = TimerConfig()

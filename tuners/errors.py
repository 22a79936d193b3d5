"""The errors tuners, drivers and the transaction engine raise: each carries one line for a person."""

from __future__ import annotations


class TuneError(Exception):
    """A tuner cannot do what was asked; `reason` is the one line a person sees."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProfileError(TuneError):
    """A profile or the tuning config is unknown or invalid."""


class TargetError(TuneError):
    """A process, cgroup, device, path, GPU or NUMA node that was named does not exist."""


class ConflictError(TuneError):
    """Another tuning daemon owns knobs this plan changes (use --force)."""


class KnobAbsent(TuneError):
    """The knob does not exist on this node (e.g. cpufreq on a VM)."""


class KnobGone(TuneError):
    """What the knob belonged to went away (a thread exited, its PID was reused)."""


class KnobFailed(TuneError):
    """Writing the knob failed (permission, read-only sysfs, rejected value)."""


class JournalError(TuneError):
    """The journal cannot be written or locked."""


class TransactionFailed(TuneError):
    """An apply failed part-way (or was interrupted by `signum`); what it had applied was rolled back."""

    def __init__(self, reason: str, knob: str, rolled_back: list[str], not_restored: list[str],
                 signum: int | None = None) -> None:
        super().__init__(reason)
        self.knob = knob
        self.rolled_back = rolled_back
        self.not_restored = not_restored
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal for an interrupted apply (130 SIGINT, 143 SIGTERM), else 2."""
        return 128 + self.signum if self.signum else 2

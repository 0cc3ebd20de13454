"""Scratch: the manifest-level live-trial limit shared by every task's Tuner in one driver process."""
import threading

from ray.tune.search import BasicVariantGenerator


class ManifestSlots:
    """Live trials across every task's Tuner of this driver (threads of one process)."""

    def __init__(self, limit: int):
        self.limit, self.live, self.lock = limit, set(), threading.Lock()

    def take(self, trial_id: str) -> bool:
        with self.lock:
            if len(self.live) >= self.limit:
                return False
            self.live.add(trial_id)
            return True

    def give(self, trial_id: str) -> None:
        with self.lock:
            self.live.discard(trial_id)


SLOTS = ManifestSlots(3)


class Limited(BasicVariantGenerator):
    """Tune's random/grid generator that also waits for a manifest-level slot. (The slots are
    process-local: not pickled with the Tuner; a restored Tuner uses this process's.)"""

    def next_trial(self):
        if self.is_finished() or (self.max_concurrent > 0 and len(self._live_trials) >= self.max_concurrent):
            return None
        if len(SLOTS.live) >= SLOTS.limit:
            return None
        trial = super().next_trial()
        if trial is not None and not SLOTS.take(trial.trial_id):
            raise RuntimeError("slot race")  # one thread per Tuner; the check above and take() race only across Tuners
        return trial

    def on_trial_complete(self, trial_id, result=None, error=False):
        super().on_trial_complete(trial_id, result=result, error=error)
        SLOTS.give(trial_id)



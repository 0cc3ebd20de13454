"""One line per trial that ended (finished, stopped by the scheduler, failed, or failed and retried),
printed once, beside the per-task progress."""

from __future__ import annotations

from orchestrator.progress import ProgressCallback


class _Trial:
    def __init__(self, trial_id: str, epoch: int | None, value: float | None, config: dict):
        self.trial_id, self.status, self.config = trial_id, "TERMINATED", config
        self.last_result = {"epoch": epoch, "psnr": value} if epoch else {}


def test_each_ended_trial_gets_one_line_naming_how_it_ended_its_metric_and_hyperparameters(monkeypatch):
    import orchestrator.progress as progress

    sent = []
    callback = ProgressCallback("no-board", "colorshift", "psnr", 3)
    monkeypatch.setattr(callback, "_send", lambda *args: sent.append(args))
    callback.on_trial_complete(0, [], _Trial("a_00000", 3, 17.234, {"lambda_cyc": 10, "lambda_idt": 0.5}))
    callback.on_trial_complete(0, [], _Trial("a_00001", 1, 9.0, {"lambda_cyc": 5, "lambda_idt": 0.0}))
    callback.on_trial_error(0, [], _Trial("a_00002", None, None, {"lambda_cyc": 5, "lambda_idt": 0.0}))
    callback.on_trial_recover(0, [], _Trial("a_00003", None, None, {}))
    assert [s[1] for s in sent] == ["finished", "stopped", "failed", "running"]
    assert sent[0][3] == "finished after 3 epoch(s), psnr 17.23 (lambda_cyc=10, lambda_idt=0.5)"
    assert sent[1][3].startswith("stopped early by the scheduler after 1 epoch(s), psnr 9")
    assert sent[2][3].startswith("failed (lambda_cyc=5") and "retries" in sent[3][3]

    # The board keeps them per task; the driver prints each once, whatever the polls see.
    board = progress.ProgressBoard.__ray_actor_class__()  # the class itself, not the actor
    board.register("colorshift", "psnr", "max", 4)
    for args in sent:
        board.update("colorshift", *args)
    snapshots = [board.snapshot(), board.snapshot()]
    printed: list[str] = []
    monkeypatch.setattr(progress.ray, "get", lambda value: value)
    polls = iter(snapshots)

    class _Board:
        class snapshot:  # noqa: N801 - stands in for the actor method
            @staticmethod
            def remote():
                return next(polls)

    progress.follow(_Board, lambda timeout: True, interval=0, echo=printed.append)
    ended = [line for line in printed if line.startswith("  colorshift: trial ")]
    assert len(ended) == 4 and ended[0].startswith("  colorshift: trial a_00000 finished after 3 epoch(s)")

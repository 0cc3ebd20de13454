"""One line per trial that ended (finished, stopped by the scheduler, diverged, failed, or failed
and retried), printed once, beside the per-task progress: with its best epoch, and the baseline
marked."""

from __future__ import annotations

from orchestrator.sweep.progress import ProgressCallback


class _Trial:
    def __init__(
        self,
        trial_id: str,
        epoch: int | None,
        value: float | None,
        config: dict,
        best_epoch: int | None = None,
        **extra,
    ):
        self.trial_id, self.status, self.config = trial_id, "TERMINATED", config
        self.last_result = (
            {
                "epoch": epoch,
                "psnr": value,
                "best_psnr": value,
                "best_epoch": best_epoch or epoch,
                **extra,
            }
            if epoch
            else {}
        )


def test_each_ended_trial_gets_one_line_naming_how_it_ended_its_metric_and_hyperparameters(
    monkeypatch,
):
    import orchestrator.sweep.progress as progress

    sent = []
    callback = ProgressCallback(
        "no-board", "colorshift", "psnr", 3, baseline={"lambda_cyc": 10.0, "lambda_idt": 0.5}
    )
    monkeypatch.setattr(callback, "_send", lambda *args: sent.append(args))
    trials = [
        _Trial("a_00000", 3, 17.234, {"lambda_cyc": 10, "lambda_idt": 0.5}, best_epoch=2),
        _Trial("a_00001", 1, 9.0, {"lambda_cyc": 5, "lambda_idt": 0.0}),
        _Trial("a_00002", None, None, {"lambda_cyc": 5, "lambda_idt": 0.0}),
        _Trial("a_00003", None, None, {}),
        _Trial(
            "a_00004",
            2,
            8.0,
            {"lambda_cyc": 20, "lambda_idt": 0.0},
            diverged="at epoch 2: loss_G is nan",
        ),
    ]
    callback.on_trial_complete(0, trials, trials[0])
    callback.on_trial_complete(0, trials, trials[1])
    callback.on_trial_error(0, trials, trials[2])
    callback.on_trial_recover(0, trials, trials[3])
    callback.on_trial_complete(0, trials, trials[4])
    assert [s[1] for s in sent] == ["finished", "stopped", "failed", "running", "diverged"]
    assert sent[0][3] == (
        "finished after 3 epoch(s), best psnr 17.23 at epoch 2 (lambda_cyc=10, lambda_idt=0.5, "
        "the baseline)"
    )
    assert sent[1][3].startswith(
        "stopped early by the scheduler after 1 epoch(s), best psnr 9 at epoch 1"
    )
    assert sent[2][3].startswith("failed (lambda_cyc=5") and "retries" in sent[3][3]
    assert sent[4][3].startswith(
        "diverged at epoch 2: loss_G is nan, best psnr 8 at epoch 2 (lambda_cyc=20"
    )

    # The board keeps them per task; the driver prints each once, whatever the polls see.
    board = progress.ProgressBoard.__ray_actor_class__()  # the class itself, not the actor
    board.register("colorshift", "psnr", "max", 5)
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
    assert len(ended) == 5 and ended[0].startswith(
        "  colorshift: trial a_00000 finished after 3 epoch(s)"
    )
    assert "1 running, 1 finished, 1 stopped, 1 diverged, 1 failed" in printed[-1]

"""Accelerate helpers shared by the stages that own an ``Accelerator``."""
from __future__ import annotations

import contextlib

_PIPELINE_DEPTH = 0


@contextlib.contextmanager
def pipeline_owns_process_group():
    """While active, stages must not destroy the process group when they finish.

    ``Accelerator.end_training()`` tears the torch.distributed group down; the
    pipeline runs several stages in one launch, so it keeps the group alive
    and tears it down once at the end.
    """
    global _PIPELINE_DEPTH
    _PIPELINE_DEPTH += 1
    try:
        yield
    finally:
        _PIPELINE_DEPTH -= 1


def end_stage(accelerator) -> None:
    """Finish trackers; destroy the process group unless a pipeline still needs it."""
    if _PIPELINE_DEPTH > 0:
        for tracker in accelerator.trackers:
            tracker.finish()
    else:
        accelerator.end_training()

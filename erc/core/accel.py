"""Accelerate helpers shared by the stages that own an ``Accelerator``."""
from __future__ import annotations

import contextlib
import os

import torch

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
    """Finish trackers; destroy the process group unless a pipeline still needs it.

    Inside a pipeline the next stage builds its own ``Accelerator``, possibly with another
    ``mixed_precision``: Accelerate keeps one ``AcceleratorState`` per process and refuses a second
    with other settings, so it is reset here (the ``PartialState``, which holds the process group and
    the device, is kept).
    """
    if _PIPELINE_DEPTH > 0:
        from accelerate.state import AcceleratorState, GradientState

        for tracker in accelerator.trackers:
            tracker.finish()
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    else:
        accelerator.end_training()


def use_cpu_processes() -> bool:
    """True when launched as several processes on a machine without CUDA.

    ``accelerate launch --cpu --num_processes N`` starts one process unless MPI is
    set up (accelerate issue #2741); several CPU processes come from the torchrun
    route (``accelerate launch --multi_gpu`` or ``torchrun``), which Accelerate
    treats as multi-CPU (gloo) only when told ``cpu=True``. Every stage passes
    this to its ``Accelerator``/``PartialState`` so all of them agree.
    """

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()

"""Training state on disk without pickle: what ``Accelerator.save_state`` saves, in safetensors + JSON.

``save_state`` writes the model as safetensors but the optimizer, scheduler and RNG states
with ``torch.save`` (``optimizer.bin``, ``scheduler.bin``, ``random_states_N.pkl``): pickle
files, which we never write. :func:`save_training_state` writes the same state as

- ``model.safetensors`` (``model_1.safetensors``, ... for further prepared models);
- ``optimizer.safetensors`` (every state tensor, keyed ``state/<param>/<name>``) plus
  ``optimizer.json`` (``param_groups`` and the non-tensor state values);
- ``scheduler.json`` (the scheduler's ``state_dict``);
- ``scaler.json`` (a GradScaler's state, fp16 only);
- per process, ``random_states_<rank>.json`` (Python and NumPy generators, Accelerate's step
  counter) and ``random_states_<rank>.safetensors`` (torch CPU and device generators).

Every file round-trips bit for bit, so a resumed run ends with the same numbers as an
uninterrupted one. :func:`load_training_state` reads this layout, and falls back to
``accelerator.load_state`` for a checkpoint written by ``save_state`` (Accelerate reads those
with ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from erc.core.io import read_json, write_json

logger = logging.getLogger(__name__)
RNG_PREFIX = "random_states"


def _indexed(name: str, i: int, ext: str) -> str:
    return f"{name}.{ext}" if i == 0 else f"{name}_{i}.{ext}"


def _json_safe(value: Any, where: str) -> Any:
    """Tuples become lists; anything JSON cannot hold is an error naming where it was found."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{where}: a {type(value).__name__} cannot be written as JSON")


# ---- optimizer -------------------------------------------------------------------------------
def _split_optimizer_state(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = _json_safe(value, f"optimizer state {pid}.{key}")
    meta = {"param_groups": _json_safe(sd["param_groups"], "optimizer param_groups"), "scalars": scalars,
            "params_with_state": [int(p) for p in sd["state"]]}
    return tensors, meta


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {int(p): {} for p in meta["params_with_state"]}
    for name, value in tensors.items():
        _, pid, key = name.split("/", 2)
        state[int(pid)][key] = value
    for pid, entry in meta["scalars"].items():
        state[int(pid)].update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


# ---- RNG -------------------------------------------------------------------------------------
def _rng_state(step: int) -> tuple[dict, dict[str, torch.Tensor]]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {"step": int(step), "python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{i}"] = s
    return meta, tensors


def _set_rng_state(meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda/")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])


# ---- the whole state -------------------------------------------------------------------------
def save_training_state(accelerator, directory: str | Path) -> Path:
    """Write the prepared models, optimizers, schedulers, scaler and every process's RNG into ``directory``.

    Collective: call it on every process (each writes its own RNG files; the main process
    writes the rest). The folder must exist.
    """
    out = Path(directory)
    if getattr(accelerator, "_custom_objects", None):
        raise RuntimeError("save_training_state: objects registered with register_for_checkpointing are not saved; "
                           "keep their state in the trainer state instead")
    if accelerator.is_main_process:
        for i, model in enumerate(accelerator._models):
            save_model(accelerator.unwrap_model(model), str(out / _indexed("model", i, "safetensors")))
        for i, opt in enumerate(accelerator._optimizers):
            tensors, meta = _split_optimizer_state(opt.state_dict())
            save_file(tensors, str(out / _indexed("optimizer", i, "safetensors")))
            write_json(out / _indexed("optimizer", i, "json"), meta)
        for i, sched in enumerate(accelerator._schedulers):
            write_json(out / _indexed("scheduler", i, "json"), _json_safe(sched.state_dict(), "scheduler state"))
        if accelerator.scaler is not None:
            write_json(out / "scaler.json", _json_safe(accelerator.scaler.state_dict(), "scaler state"))
    meta, tensors = _rng_state(accelerator.step)
    rank = accelerator.process_index
    write_json(out / f"{RNG_PREFIX}_{rank}.json", meta)
    save_file(tensors, str(out / f"{RNG_PREFIX}_{rank}.safetensors"))
    return out


def is_legacy_checkpoint(directory: str | Path) -> bool:
    """A folder written by ``Accelerator.save_state`` (``optimizer.bin``) rather than :func:`save_training_state`."""
    d = Path(directory)
    return not (d / f"{RNG_PREFIX}_0.json").is_file() and (d / f"{RNG_PREFIX}_0.pkl").is_file()


def load_training_state(accelerator, directory: str | Path) -> None:
    """Restore what :func:`save_training_state` wrote (or an older ``save_state`` folder) into the prepared objects."""
    d = Path(directory)
    if is_legacy_checkpoint(d):
        accelerator.load_state(str(d))
        return
    device = str(accelerator.device)
    for i, model in enumerate(accelerator._models):
        load_model(accelerator.unwrap_model(model), str(d / _indexed("model", i, "safetensors")), strict=True,
                   device=device)
    for i, opt in enumerate(accelerator._optimizers):
        tensors = load_file(str(d / _indexed("optimizer", i, "safetensors")))
        opt.load_state_dict(_join_optimizer_state(tensors, read_json(d / _indexed("optimizer", i, "json"))))
    for i, sched in enumerate(accelerator._schedulers):
        sched.load_state_dict(read_json(d / _indexed("scheduler", i, "json")))
    if accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(read_json(d / "scaler.json"))
    rank = accelerator.process_index
    rng = d / f"{RNG_PREFIX}_{rank}.json"
    if not rng.is_file():   # written by fewer processes than resume it: this rank keeps its seeded generators
        logger.warning("%s: no random state for process %d (the checkpoint was written by fewer processes); "
                       "its generators stay as seeded", d, rank)
        return
    meta = read_json(rng)
    _set_rng_state(meta, load_file(str(d / f"{RNG_PREFIX}_{rank}.safetensors")))
    accelerator.step = int(meta["step"])

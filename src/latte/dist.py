"""The torchrun environment, read one way (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

Process-group set-up stays with its users (training joins a group for DDP/FSDP; sampling and evaluation only
split work by rank); this module only says which process this is. Without torchrun: rank 0 of 1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["TorchrunEnv", "torchrun_env"]


@dataclass(frozen=True)
class TorchrunEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r}: expected an integer (set by torchrun)") from None


def torchrun_env() -> TorchrunEnv:
    """This process's rank, the number of processes and its local rank, from torchrun's variables."""
    env = TorchrunEnv(rank=_int_env("RANK", 0), world_size=_int_env("WORLD_SIZE", 1),
                      local_rank=_int_env("LOCAL_RANK", 0))
    if env.world_size < 1 or not 0 <= env.rank < env.world_size:
        raise ValueError(f"torchrun environment is inconsistent: RANK={env.rank}, WORLD_SIZE={env.world_size}")
    return env

"""Entry points for the released official checkpoints: Latte (:mod:`latte.interop.official`) and the LaVie
U-Nets (:mod:`latte.interop.lavie`)."""
from latte.interop.lavie import OfficialLaVie, load_lavie
from latte.interop.official import (
    CheckpointError,
    OfficialLatte,
    OfficialLatteT2V,
    load_latte,
    load_latte_t2v,
    read_state_dict,
    save_official,
)

__all__ = ["CheckpointError", "OfficialLaVie", "OfficialLatte", "OfficialLatteT2V", "load_latte", "load_latte_t2v",
           "load_lavie", "read_state_dict", "save_official"]

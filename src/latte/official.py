"""Entry points for the released official Latte checkpoints (see :mod:`latte.interop.official`)."""
from latte.interop.official import (
    CheckpointError,
    OfficialLatte,
    OfficialLatteT2V,
    load_latte,
    load_latte_t2v,
    read_state_dict,
    save_official,
)

__all__ = ["CheckpointError", "OfficialLatte", "OfficialLatteT2V", "load_latte", "load_latte_t2v",
           "read_state_dict", "save_official"]

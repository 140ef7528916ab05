"""Sampling: the :class:`LattePipeline`, samplers (official loops and diffusers schedulers), step caches, saving
videos."""
from latte.sampling.cache import DeepCache, TeaCache, parse_cache
from latte.sampling.outputs import FORMATS, save_videos
from latte.sampling.pipeline import LattePipeline, SampleOutput, model_config_hash
from latte.sampling.samplers import SAMPLERS, sample_loop

__all__ = ["LattePipeline", "SampleOutput", "save_videos", "FORMATS", "SAMPLERS", "sample_loop",
           "model_config_hash", "TeaCache", "DeepCache", "parse_cache"]
